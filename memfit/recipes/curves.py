"""curves.png of a fine-tune run: training loss, evaluation perplexity and memory over optimizer steps, drawn from
what results.json records (`train.losses`, `train.evals`, `train.memory_curve`, the base and final evaluations), so
the picture and the numbers can never disagree."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any, Optional

from ..core.files import atomic_write_bytes

CURVES_FILE = "curves.png"


def eval_points(r: dict[str, Any]) -> list[tuple[int, float]]:
    """(step, perplexity): the base before training at step 0, every periodic evaluation, the final one - of the
    validation split when the run has one (the periodic evaluations score it), else of the test documents."""
    train, ev = r["train"], r.get("validation") or r["evaluation"]
    points = [(0, ev["base"]["perplexity"])] + [(e["step"], e["perplexity"]) for e in train.get("evals", [])]
    points.append((train["steps"], ev["final"]["perplexity"]))
    return sorted({s: p for s, p in points if p is not None and math.isfinite(p)}.items())


def loss_points(r: dict[str, Any]) -> list[tuple[int, float]]:
    # losses[i] is step i + 1's (a resumed run's list starts with the checkpoint's)
    return [(i + 1, v) for i, v in enumerate(r["train"].get("losses", [])) if v is not None and math.isfinite(v)]


def write_curves(run_dir: str | Path, r: dict[str, Any]) -> Optional[Path]:
    """Write `run_dir/curves.png` atomically (a half-drawn picture never stands under the final name); None when
    the run has no training step to draw."""
    import matplotlib

    matplotlib.use("Agg")  # no display on a training node
    import matplotlib.pyplot as plt

    losses, evals, memory = loss_points(r), eval_points(r), r["train"].get("memory_curve", [])
    if not losses:
        return None
    panels = [("training loss (nats/token)", losses, "#4c72b0")]
    if evals:
        panels.append(("validation perplexity" if r.get("validation") else "test perplexity", evals, "#55a868"))
    if memory:
        unit = "allocator peak" if "peak_gib" in r["memory"]["train"] else "process peak RSS"
        panels.append((f"memory GiB ({unit})", [(m["step"], m["peak_gib"]) for m in memory], "#dd8452"))
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.6 * len(panels)), sharex=True, squeeze=False)
    for ax, (label, points, colour) in zip(axes[:, 0], panels):
        steps, values = zip(*points)
        ax.plot(steps, values, marker="o" if len(points) < 40 else None, markersize=3, color=colour)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("optimizer step")
    fig.suptitle(f"{r['model']} / {r['stack']}", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return atomic_write_bytes(Path(run_dir) / CURVES_FILE, buf.getvalue())
