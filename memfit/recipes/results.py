"""The job's report phase: results.json (every number of the run, with the settings that produced it), summary.md and
curves.png, written atomically by the main process only."""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from ..core.files import atomic_write_json, atomic_write_text
from ..core.integrity import with_checksum
from ..models import describe_model
from ..plan.planner import PlanResult, versions
from .curves import CURVES_FILE, write_curves
from .planning import is_capped
from .quality import quality_fields, warn_if_regressed
from .run_config import FinetuneConfig
from .summary import summary_markdown

log = logging.getLogger(__name__)


def model_identity(model) -> dict[str, Any]:
    """The class, family and attention implementation of the trained model (a LoRA wrapper's base), so a run names
    what it trained."""
    built = describe_model(model)
    return {"model_class": built["model_class"], "model_family": built["family"], "attention": built["attention"]}


def results_record(cfg: FinetuneConfig, *, model, stack, planned: PlanResult, trained, evaluation: dict[str, Any],
                   original, base, final, data_info: dict[str, Any], num_processes: int,
                   clock: dict[str, float]) -> dict[str, Any]:
    """What results.json holds."""
    return {
        "max_batch_size": planned.max_micro_batch,
        "gradient_accumulation_steps": trained.grad_accum,
        "effective_batch_size": trained.effective_batch,
        **quality_fields(original, base, final),
        # timed after the first (warm-up) step: a 1-step run has no rate, said as null rather than 0 tokens/s
        "tokens_per_s": trained.tokens_per_s or None,
        "memory": {"train": trained.memory, "planned_peak_gib": planned.peak_gib, "budget_gib": planned.budget_gib,
                   "breakdown_gib": planned.memory_breakdown_gib},
        "device": planned.device, "num_processes": num_processes,
        "versions": versions(),
        "model": cfg.model.source, **model_identity(model), "random_init": cfg.model.random,
        "stack": stack.spec, "stack_description": stack.describe(),
        "data": data_info,
        "evaluation": evaluation,
        "plan": {**planned.to_dict(), "capped_by_max_micro_batch": is_capped(planned, cfg.plan.max_micro_batch)},
        "train": {k: v for k, v in trained.to_dict().items() if k != "memory"},
        "adapter_dir": trained.adapter_dir,
        "seconds": clock,
        "config": cfg.model_dump(),
    }


def write_run_report(run_dir: Path, results: dict[str, Any], data_table: str, is_main: bool, say) -> None:
    """Completes `results` (an earlier run's rate, the divergence error) and writes the run's files."""
    keep_previous_rate(results, run_dir / "results.json")
    if not math.isfinite(results["final_perplexity"]):
        results["error"] = (f"the final perplexity is not finite ({results['final_perplexity']}): training "
                            f"diverged; lower the learning rate")
    if not is_main:
        return
    warn_if_regressed(results)
    if write_curves(run_dir, results):
        results["curves_png"] = CURVES_FILE
    # NaN becomes null (always valid JSON); the checksum lets eval and merge notice a hand-edited record
    results["checksum"] = with_checksum(results)["checksum"]  # the caller gets exactly what the file holds
    atomic_write_json(run_dir / "results.json", results, default=str)
    atomic_write_text(run_dir / "summary.md", summary_markdown(results, data_table))
    say(f"wrote {run_dir / 'results.json'} and {run_dir / 'summary.md'}")


def keep_previous_rate(results: dict[str, Any], previous: Path) -> None:
    """A rerun of a finished run resumes at its last step and trains nothing: keep the measured throughput of the run
    that did the training instead of overwriting it with 0."""
    if results["tokens_per_s"] or not previous.is_file():
        return
    try:
        rate = json.loads(previous.read_text()).get("tokens_per_s")
    except (OSError, ValueError):
        return
    if rate:
        results["tokens_per_s"] = rate
        results["train"]["tokens_per_s_note"] = "measured by the earlier run that trained; this rerun trained no steps"
