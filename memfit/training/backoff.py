"""Out-of-memory back-off during training: re-run the failed window in smaller micro-batches and keep the size that fits.

The planner picks the largest micro-batch that fits, but a real OOM can still come later (a longer batch, allocator
fragmentation, another process on the GPU). Policy:

* A window is the W sequences of one optimizer step (W = loader micro-batch x accumulation steps, per process); it is
  fixed by the data order and never changes, so the effective batch never changes.
* After an OOM at micro-batch m, the next size is the largest divisor d of W below m (halving when m is a power of
  two; for W = 24, m = 8 it is 6), so a full window still splits into equal micro-batches and d x (W / d) == W. Each
  further OOM steps down again; at 1 the OOM is re-raised with what to change.
* The window that failed is re-run from its start with the same samples, in order, split into micro-batches of d; its
  gradients are dropped and the RNG state of the window's start restored, and the loss is still normalised by the
  window's total token count. No step is lost or repeated: the retried window *is* the step a run at size d computes.
* The new size stays for the rest of the run (and in its checkpoints), is logged, and is written into the planner's
  cache entry (`update_plan_cache`) so the next plan starts from a size that trains.
"""

from __future__ import annotations

import gc
import logging
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

import torch

from ..core.protocol import steps_to_reach
from ..plan.cache import read_plan_cache, write_plan_cache
from ..plan.oom import is_oom, oom_summary

log = logging.getLogger(__name__)
T = TypeVar("T")


def next_smaller(micro_batch: int, window: int) -> int:
    """The largest divisor of `window` below `micro_batch`; 0 when there is none."""
    return max((d for d in range(1, micro_batch) if window % d == 0), default=0)


def split_window(batches: list[dict[str, torch.Tensor]], micro_batch: int) -> list[dict[str, torch.Tensor]]:
    """The window's rows, in order, in micro-batches of `micro_batch` (the last one shorter if the window is).
    Without a back-off the loader's own batches are used as they are."""
    if all(len(b["input_ids"]) <= micro_batch for b in batches):
        return batches
    rows = {k: torch.cat([b[k] for b in batches]) for k in batches[0]}
    n = len(rows["input_ids"])
    return [{k: v[i:i + micro_batch].clone() for k, v in rows.items()} for i in range(0, n, micro_batch)]


def _rng_state() -> tuple[torch.Tensor, Optional[list[torch.Tensor]]]:
    return torch.get_rng_state(), (torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)


def _set_rng_state(state) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state_all(state[1])


def update_plan_cache(path: str | Path, micro_batch: int, event: dict[str, Any]) -> None:
    """Lower the cached PlanResult (the JSON `memfit.plan.planner.plan` writes) to a micro-batch that trained, keeping its
    effective batch, and record the back-off in it. Written atomically; a missing entry is left alone."""
    data = read_plan_cache(path)  # None: gone, or corrupt (then removed: the next plan measures afresh)
    if data is None:
        log.warning("plan cache %s not found: the back-off to micro-batch %d is not recorded there", path, micro_batch)
        return
    world = max(1, int(data.get("num_processes") or 1))
    effective = int(data.get("effective_batch") or micro_batch * world)
    ga = steps_to_reach(effective, micro_batch, world)
    data.update(max_micro_batch=min(micro_batch, data.get("max_micro_batch") or micro_batch), grad_accum=ga)
    if (data.get("best_micro_batch") or 0) > micro_batch:
        data.update(best_micro_batch=micro_batch, best_grad_accum=ga, best_tokens_per_s=None)
    data.setdefault("backoffs", []).append(event)
    write_plan_cache(path, data)


class OOMBackoff:
    """Runs each window with the current micro-batch and steps down on real OOMs (see the module docstring)."""

    def __init__(self, micro_batch: int, window: int, *, num_processes: int = 1, plan_cache: Optional[str] = None,
                 trace: Optional[list[dict[str, Any]]] = None):
        self.micro_batch, self.window, self.world, self.plan_cache = micro_batch, window, num_processes, plan_cache
        self.trace: list[dict[str, Any]] = list(trace or [])

    @property
    def grad_accum(self) -> int:
        return steps_to_reach(self.window, self.micro_batch)

    def run(self, step: int, batches: list[dict[str, torch.Tensor]],
            attempt: Callable[[list[dict[str, torch.Tensor]]], T]) -> T:
        """`attempt(micro_batches)` runs forward+backward over the whole window; it must start from zero gradients."""
        while True:
            rng = _rng_state()
            try:
                return attempt(split_window(batches, self.micro_batch))
            except Exception as exc:  # noqa: BLE001 - only OOMs are handled, everything else propagates
                if not is_oom(exc):
                    raise
                error = oom_summary(exc)
            # Out of the except block: the traceback (and with it the failed step's graph) is gone now.
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            _set_rng_state(rng)
            self._shrink(step, error)

    def _shrink(self, step: int, error: str) -> None:
        smaller = next_smaller(self.micro_batch, self.window)
        if self.world > 1 or not smaller:
            why = (f"the {self.world} processes would have to agree on a new size mid-step" if self.world > 1 else
                   "there is no smaller micro-batch")
            raise torch.OutOfMemoryError(
                f"out of memory at step {step} with micro-batch {self.micro_batch} ({error}) and {why}: re-plan "
                f"(memfit plan --fresh), or add memory strategies (gc, q4, adam8) or use shorter sequences")
        event = {"step": step, "from_micro_batch": self.micro_batch, "to_micro_batch": smaller,
                 "grad_accum": steps_to_reach(self.window, smaller), "effective_batch": self.window * self.world,
                 "error": error}
        self.trace.append(event)
        log.warning("out of memory at step %d with micro-batch %d: retrying the same window as %d x %d "
                    "(effective batch %d unchanged)", step, self.micro_batch, event["grad_accum"], smaller,
                    event["effective_batch"])
        if self.plan_cache:
            update_plan_cache(self.plan_cache, smaller, event)
        self.micro_batch = smaller
