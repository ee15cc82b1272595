"""Issue 7's ablation table from one machine's results: one strategy at a time, ratios to the HF recipe of the same call.

    python benchmarks/ablation_table.py benchmarks/results/h100-2026-11-26b

Reads the gpu_bench (`abl*`, `c*`) and step_probe (`goal*`, `*compile512`) JSON files of that directory and writes
ablation.json, ablation.md and ablation.png next to them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HF = "HF recipe (QLoRA fp16, prepare_model_for_kbit_training)"
# (label, planner-result stack name or None, gpu_bench file stem per seq)
SEARCHED = [
    ("HF recipe", HF, "abl"),
    ("`lora+q4+bf16+paged_adam8` (one dtype)", "quant4bit+bf16+lora+paged_adam8", "abl"),
    ("+ `gc` (seed stack)", "quant4bit+bf16+lora+gc+paged_adam8", "abl"),
    ("+ `cce`", "quant4bit+bf16+lora+gc+cce+paged_adam8", "abl"),
    ("`lora+bf16+cce` (no 4-bit, no GC)", "bf16+lora+cce", "abl"),
    ("+ `compile`", "bf16+lora+cce+compile", "c"),
    ("+ `compile`, LoRA dropout 0 (throughput-best)", "bf16+lora:dropout=0.0+cce+compile", "c"),
]
OFFLOAD = "lora+q4+bf16+gc+cce+offload+tiled_mlp+paged_adam8"
# fixed-size step_probe rows (no search): (label, stack, files)
PROBED = [("+ `offload` + `tiled_mlp` (from + `cce`)", OFFLOAD, ("goal512", "goal512b", "goal2048")),
          ("+ `offload` + `tiled_mlp` + `compile`", OFFLOAD.replace("paged", "compile+paged"), ("goal512_compile",))]


def _load(d: Path, name: str) -> dict:
    p = d / f"{name}.json"
    return json.loads(p.read_text()) if p.exists() else {}


def _probed_row(label: str, seq: int, probes: list[dict], hf: dict) -> dict:
    fit = [p for p in probes if p["fits"]]
    fail = [p["micro_batch"] for p in probes if not p["fits"]]
    top = max(p["micro_batch"] for p in fit)
    # the first step at a new size also faults the host arena's new pages in; a repeated size shows the rate
    best = max(fit, key=lambda p: p["tokens_per_s"])
    return {"label": label, "seq": seq, "max": top, "fails": min(fail) if fail else None,
            "x_hf_batch": top / hf["max"], "tok_s_max": max(p["tokens_per_s"] for p in fit if p["micro_batch"] == top),
            "tok_s_best": best["tokens_per_s"], "best_micro": best["micro_batch"],
            "x_hf_tok_s": best["tokens_per_s"] / hf["tok_s_max"], "hf_tok_s": hf["tok_s_max"],
            "peak_gib": max(p["peak_gib"] for p in fit if p["micro_batch"] == top),
            "source": "step_probe files (fixed sizes, not a search)"}


def build(d: Path) -> dict:
    rows, hf = [], {}
    for seq in (512, 2048):
        for label, stack, stem in SEARCHED:
            data = _load(d, f"{stem}{seq}")
            r = next((r for r in data.get("results", []) if r["stack"] == stack), None)
            if r is None:
                continue
            call_hf = next(x for x in data["results"] if x["stack"] == HF)  # ratios within one call
            best = r["best_tokens_per_s"] or r["tokens_per_s"]
            rows.append({"label": label, "seq": seq, "max": r["max_micro_batch"], "fails": r["max_micro_batch"] + 1,
                         "x_hf_batch": r["max_micro_batch"] / call_hf["max_micro_batch"],
                         "tok_s_max": r["tokens_per_s"], "tok_s_best": best, "best_micro": r["best_micro_batch"],
                         "x_hf_tok_s": best / call_hf["tokens_per_s"], "peak_gib": r["peak_gib"],
                         "hf_tok_s": call_hf["tokens_per_s"], "source": f"{stem}{seq}.json"})
            hf[seq] = rows[-1] if stack == HF else hf.get(seq)
        for label, stack, files in PROBED:
            probes = [p for name in files for p in _load(d, name).get("rows", []) if p["stack"] == stack and p["seq"] == seq]
            if probes and seq in hf:
                rows.append(_probed_row(label, seq, probes, hf[seq]))
    meta = _load(d, "abl512").get("meta", {})
    return {"card": meta.get("device"), "date": meta.get("date"), "rows": rows}


def markdown(table: dict) -> str:
    out = [f"Card: {table['card']}, {table['date']}. Ratios are to the HF recipe measured in the same call.", "",
           "| seq | stack | max micro-batch | x HF | first OOM | peak GiB | tok/s @max | best (micro) | x HF tok/s |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in table["rows"]:
        out.append(f"| {r['seq']} | {r['label']} | {r['max']} | {r['x_hf_batch']:.2f} | {r['fails'] or '-'} | "
                   f"{r['peak_gib']:.1f} | {r['tok_s_max']:,.0f} | {r['tok_s_best']:,.0f} ({r['best_micro'] or 'max'}) | "
                   f"{r['x_hf_tok_s']:.2f} |")
    return "\n".join(out) + "\n"


def plot(table: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    labels = list(dict.fromkeys(r["label"].replace("`", "") for r in table["rows"]))
    for ax, key, title in ((axes[0], "x_hf_batch", "max micro-batch / HF recipe"),
                           (axes[1], "x_hf_tok_s", "best tokens/s / HF recipe")):
        for k, seq in enumerate((512, 2048)):
            vals = {r["label"].replace("`", ""): r[key] for r in table["rows"] if r["seq"] == seq}
            ax.barh([i + 0.4 * k for i in range(len(labels))], [vals.get(lab, 0) for lab in labels], 0.4,
                    label=f"seq {seq}")
        ax.set_yticks([i + 0.2 for i in range(len(labels))], labels, fontsize=8)
        ax.axvline(1.0, color="k", lw=0.8)
        ax.set_xscale("log" if key == "x_hf_batch" else "linear")
        ax.set_title(title)
        ax.invert_yaxis()
        ax.legend()
    fig.suptitle(f"Llama-3.2-3B (random weights) on {table['card']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    d = Path(sys.argv[1])
    table = build(d)
    (d / "ablation.json").write_text(json.dumps(table, indent=2))
    (d / "ablation.md").write_text(markdown(table))
    plot(table, d / "ablation.png")
    print(markdown(table))


if __name__ == "__main__":
    main()
