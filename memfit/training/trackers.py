"""accelerate's trackers (TensorBoard by default) for a run: its settings as hyperparameters, evaluations as scalars.
Kept apart from the loop because the fine-tune recipe drives them too (it evaluates before and after training)."""

from __future__ import annotations

import json
from typing import Any, Optional


def start_trackers(acc, stack, cfg) -> None:
    """accelerate's trackers (the Accelerator's log_with) with the run's settings as hyperparameters."""
    # trackers take scalars only (TensorBoard's hparams refuse dicts): nested settings go in as JSON text
    settings = {k: json.dumps(v, sort_keys=True, default=str) if isinstance(v, (dict, list)) else v
                for k, v in cfg.model_dump(exclude={"log_with"}).items()}
    acc.init_trackers("memfit", config={"stack": stack.spec, **settings})


def finish_trackers(acc) -> None:
    # not acc.end_training(): it also destroys the process group, and the caller still evaluates across ranks
    for tracker in acc.trackers:
        tracker.finish()
    acc.trackers = []


def log_evaluation(acc, result: dict[str, Any], step: int, label: Optional[str] = None, curve: bool = True) -> None:
    """An evaluation as tracker scalars: `eval/perplexity` (one curve over the run; `curve` False keeps a named one
    off it, so the curve holds one split's documents) and, for a named one (base, final, original),
    `eval/<label>_perplexity` too; bits per byte alongside."""
    values = {}
    for prefix in (*(["eval/"] if curve else []), *([f"eval/{label}_"] if label else [])):
        values[f"{prefix}perplexity"] = result["perplexity"]
        if result.get("bits_per_byte") is not None:
            values[f"{prefix}bits_per_byte"] = result["bits_per_byte"]
    acc.log(values, step=step)
