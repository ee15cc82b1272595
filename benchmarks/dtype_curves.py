"""Issue 7's dtype-hygiene check: the same climate fine-tune with memfit's one-dtype 4-bit setup, with HF's fp32
upcast of norms/embeddings, and in fp32 compute, compared step by step (written by gpu_dtype_curves.sh).

    python benchmarks/dtype_curves.py OUT_DIR      # reads OUT_DIR/dtype-*/results.json, writes OUT_DIR/dtype_curves.*
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

VARIANTS = {"bf16": "memfit: one compute dtype (bf16 norms, embeddings, residual stream)",
            "upcast": "HF-style: norms/embeddings upcast to fp32 (`q4:upcast_norms=true`)",
            "fp32": "reference: fp32 compute, same 4-bit weights"}


def main() -> None:
    out = Path(sys.argv[1])
    runs = {k: json.loads((out / f"dtype-{k}" / "results.json").read_text()) for k in VARIANTS
            if (out / f"dtype-{k}" / "results.json").exists()}
    ref = runs["fp32"]["train"]["losses"]
    rows = []
    for k, r in runs.items():
        losses = r["train"]["losses"]
        diff = [abs(a - b) for a, b in zip(losses, ref)]
        rows.append({"variant": k, "what": VARIANTS[k], "stack": r["stack"], "steps": len(losses),
                     "first_loss": losses[0], "last_loss": losses[-1], "max_abs_diff_vs_fp32": max(diff),
                     "mean_abs_diff_vs_fp32": sum(diff) / len(diff), "base_ppl": r["base_perplexity"],
                     "final_ppl": r["final_perplexity"], "tokens_per_s": r["tokens_per_s"],
                     "peak_gib": r["memory"]["train"].get("peak_gib"), "losses": losses})
    meta = {"device": runs["fp32"]["device"], "versions": runs["fp32"]["versions"], "model": runs["fp32"]["model"]}
    (out / "dtype_curves.json").write_text(json.dumps({**meta, "rows": rows}, indent=2))
    lines = [f"{meta['model']} on {meta['device']}; same data order, seed and LoRA init for every run.", "",
             "| variant | stack | steps | loss first -> last | max / mean abs diff vs fp32 | perplexity base -> final "
             "| tok/s | peak GiB |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['what']} | `{r['stack']}` | {r['steps']} | {r['first_loss']:.3f} -> {r['last_loss']:.3f} | "
                     f"{r['max_abs_diff_vs_fp32']:.3f} / {r['mean_abs_diff_vs_fp32']:.3f} | {r['base_ppl']:.2f} -> "
                     f"{r['final_ppl']:.2f} | {r['tokens_per_s']:,.0f} | {r['peak_gib']:.2f} |")
    (out / "dtype_curves.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for r in rows:
        ax.plot(range(1, r["steps"] + 1), r["losses"], label=f"{r['variant']}: {r['what']}", lw=1.2)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (nats/token)")
    ax.set_title(f"{meta['model']}, climate PDFs, {meta['device']}", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "dtype_curves.png", dpi=110)


if __name__ == "__main__":
    main()
