"""Plan/bench reports: terminal table, JSON, Markdown and a PNG plot, all from the same PlanResult rows."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterable, Optional

from ..core.files import atomic_write_bytes, atomic_write_json, atomic_write_text
from .planner import PlanResult

COLUMNS = [  # (header, getter, format)
    ("stack", lambda r: r.stack, "{}"),
    ("seq", lambda r: r.seq_len, "{}"),
    ("max micro", lambda r: r.max_micro_batch, "{}"),
    ("micro", lambda r: r.micro_batch, "{}"),  # the size to train at; accum and effective are at it
    ("accum", lambda r: r.grad_accum, "{}"),
    ("effective", lambda r: r.effective_batch, "{}"),
    ("peak GiB", lambda r: r.peak_gib, "{:.1f}"),
    ("tok/s @max", lambda r: r.tokens_per_s, "{:,.0f}"),
    ("best micro", lambda r: r.best_micro_batch, "{}"),
    ("tok/s @best", lambda r: r.best_tokens_per_s, "{:,.0f}"),
    ("predicted", lambda r: r.predicted_max, "{}"),
    ("pred. err %", lambda r: r.predicted_error_pct, "{:+.0f}"),
    ("probes", lambda r: r.probe_count, "{}"),
    ("search s", lambda r: r.search_seconds, "{:.0f}"),
]


def _cells(r: PlanResult) -> list[str]:
    out = []
    for _, get, fmt in COLUMNS:
        v = get(r)
        out.append("-" if v is None else fmt.format(v))
    return out


def format_table(results: Iterable[PlanResult]) -> str:
    rows = [[h for h, _, _ in COLUMNS]] + [_cells(r) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def format_estimate(est, micro_batch: int) -> str:
    """The analytic terms (memfit.plan.memory.MemoryEstimate) as a table: who contributes each, what one more
    sequence adds, and the MiB at `micro_batch`; the device total last (host terms are listed, not summed)."""
    mib, per_sample = 2.0**-20, est.seq_len
    rows = [["term", "kind", "owner", "MiB per sequence", f"MiB at micro-batch {micro_batch}"]]
    for name, t in est.terms.items():
        if t.kind in ("static", "transient"):
            rows.append([name, t.kind, t.owner, "-", f"{est.term(name) * mib:,.1f}"])
        elif t.kind in ("token", "host"):
            each = est.term(name) * per_sample * mib
            rows.append([name, t.kind, t.owner, f"{each:,.2f}", f"{each * micro_batch:,.1f}"])
    per_seq = sum(est.per_token_bytes().values()) * per_sample * mib
    rows.append(["total (device)", "", "", f"{per_seq:,.2f}", f"{est.peak_bytes(micro_batch) * mib:,.1f}"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(len(lines) - 1, "-" * len(lines[0]))
    return "\n".join(lines)


def to_markdown(results: list[PlanResult], meta: dict[str, Any]) -> str:
    head = "| " + " | ".join(h for h, _, _ in COLUMNS) + " |"
    sep = "|" + "|".join("---" for _ in COLUMNS) + "|"
    body = ["| " + " | ".join(c.replace("|", "\\|") for c in _cells(r)) + " |" for r in results]
    about = [f"- **{k}**: {v}" for k, v in meta.items() if not isinstance(v, (dict, list))]
    vers = meta.get("versions") or (results[0].versions if results else {})
    about.append("- **versions**: " + ", ".join(f"{k} {v}" for k, v in vers.items()))
    return "\n".join([f"# {meta.get('title', 'memfit capacity plan')}", "", *about, "", head, sep, *body, ""])


def plot(results: list[PlanResult], path: Path, title: str = "") -> Optional[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seqs = sorted({r.seq_len for r in results})
    fig, axes = plt.subplots(len(seqs), 2, figsize=(13, 1.2 + 0.45 * len(results)), squeeze=False)
    for row, seq in zip(axes, seqs):
        rs = [r for r in results if r.seq_len == seq]
        labels = [r.stack for r in rs]
        row[0].barh(labels, [r.max_micro_batch for r in rs], color="#4c72b0")
        row[0].set_xlabel(f"max micro-batch (seq {seq})")
        row[1].barh(labels, [r.peak_gib or 0 for r in rs], color="#dd8452")
        row[1].set_xlabel(f"peak memory GiB (seq {seq})")
        row[1].set_yticklabels([])
        for ax, vals in ((row[0], [r.max_micro_batch for r in rs]), (row[1], [r.peak_gib or 0 for r in rs])):
            for i, v in enumerate(vals):
                ax.text(v, i, f" {v:.0f}" if isinstance(v, int) else f" {v:.1f}", va="center", fontsize=8)
    fig.suptitle(title or "memfit: max micro-batch and peak memory per stack")
    fig.tight_layout()
    _save_figure(fig, path)
    return path


def _save_figure(fig, path: Path) -> None:
    """Rendered in memory, then written through the atomic path: a full disk never leaves a truncated PNG."""
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=110, format=Path(path).suffix.lstrip(".") or "png")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def write_report(results: list[PlanResult], out_dir: str | Path, name: str = "plan",
                 meta: Optional[dict[str, Any]] = None) -> dict[str, Path]:
    """Write NAME.json, NAME.md and NAME.png into out_dir; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "device": results[0].device if results else "?", **(meta or {})}
    paths = {"json": out / f"{name}.json", "md": out / f"{name}.md", "png": out / f"{name}.png"}
    atomic_write_json(paths["json"], {"meta": meta, "results": [r.to_dict() for r in results]})
    atomic_write_text(paths["md"], to_markdown(results, meta))
    plot(results, paths["png"], meta.get("title", ""))
    return paths


def load_results(path: str | Path) -> list[PlanResult]:
    data = json.loads(Path(path).read_text())
    return [PlanResult.from_dict(r) for r in data["results"]]


FRONTIER_COLUMNS = [  # (header, FrontierRow attribute, format)
    ("stack", "stack", "{}"), ("lossiness", "lossiness", "{}"), ("max micro", "max_micro_batch", "{}"),
    ("micro", "micro_batch", "{}"), ("accum", "grad_accum", "{}"), ("effective", "effective_batch", "{}"),
    ("tok/s", "tokens_per_s", "{:,.0f}"), ("peak GiB", "peak_gib", "{:.2f}"), ("predicted", "predicted_max", "{}"),
    ("probes", "probes", "{}"), ("timed", "timing_steps", "{}"), ("s", "seconds", "{:.0f}"),
]


def format_frontier(auto) -> str:
    """The auto search (memfit.plan.auto.AutoResult): every probed stack, the winner marked, and why it won."""
    rows = [[h for h, _, _ in FRONTIER_COLUMNS]]
    for r in auto.frontier:
        cells = ["-" if getattr(r, a) is None else f.format(getattr(r, a)) for _, a, f in FRONTIER_COLUMNS]
        cells[0] = ("* " if r.stack == auto.winner else "  ") + cells[0]
        if getattr(r, "searched_to", None):  # the search stopped where the target was reached
            cells[2] = f">={r.searched_to}"
        rows.append(cells)
    widths = [max(len(row[i]) for row in rows) for i in range(len(FRONTIER_COLUMNS))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines += [f"  {r.stack}: error: {r.error}" for r in auto.frontier if r.error]
    lines += ["", f"{auto.probe_count} probes (budget {auto.probe_budget}) + {auto.timing_steps} timing steps at "
                  f"the training sizes (tok/s), {auto.search_seconds:.0f} s, "
                  f"{len(auto.pruned)} stacks pruned without probing", f"winner: {auto.why}"]
    return "\n".join(lines)


def plot_frontier(auto, path: Path) -> Path:
    """Measured tokens/s against peak memory per probed stack, coloured by lossiness, the winner ringed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5))
    kinds = sorted({r.lossiness for r in auto.frontier})
    for kind in kinds:
        rs = [r for r in auto.frontier if r.lossiness == kind and r.tokens_per_s]
        ax.scatter([r.peak_gib or 0 for r in rs], [r.tokens_per_s for r in rs], label=kind, s=40)
        for r in rs:
            ax.annotate(r.stack, (r.peak_gib or 0, r.tokens_per_s), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
    win = auto.winner_row
    if win and win.tokens_per_s:
        ax.scatter([win.peak_gib or 0], [win.tokens_per_s], s=220, facecolors="none", edgecolors="k", label="winner")
    ax.set_xlabel("peak memory at the largest fitting micro-batch (GiB)")
    ax.set_ylabel(f"steady tokens/s at the training size (seq {auto.seq_len}, target effective batch {auto.target_effective_batch})")
    ax.set_title("memfit plan --auto: the probed frontier")
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save_figure(fig, path)
    return path


def write_auto_report(auto, out_dir: str | Path, name: str = "auto", meta: Optional[dict[str, Any]] = None,
                      json_path: Optional[str | Path] = None) -> dict[str, Path]:
    """NAME.json (machine-readable frontier, probe count, seconds), NAME.txt (the table) and NAME.png."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), **(meta or {})}
    paths = {"json": Path(json_path) if json_path else out / f"{name}.json", "txt": out / f"{name}.txt",
             "png": out / f"{name}.png"}
    paths["json"].parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(paths["json"], {"meta": meta, **auto.to_dict()})
    atomic_write_text(paths["txt"], format_frontier(auto) + "\n")
    plot_frontier(auto, paths["png"])
    return paths
