"""Plan several stacks (and sequence lengths) side by side, one model load per stack, and write the comparison."""

from __future__ import annotations

import contextlib
import gc
import logging
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from ..models import load_model
from .memory import estimate
from .planner import check_seq_lens, PlanResult, plan
from .probe import SimulatedMeter
from .report import format_table, write_report
from ..core.processes import rank_and_world
from ..core.stack import Stack
from ..runtime import configure_runtime

log = logging.getLogger(__name__)


def free_device() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def bench(model: str, stacks: list[str | Stack], seq_lens: list[int], *, random_init: bool = False,
          margin: float = 0.0, eval_batch_size: int = 0, target_effective_batch: Optional[int] = None,
          fresh: bool = False, cpu_budget_gib: Optional[float] = None, limit: int = 8192,
          out_dir: Optional[str | Path] = None, name: str = "bench", title: str = "",
          accelerator_for: Optional[Callable[[Stack], Any]] = None) -> list[PlanResult]:
    """Exact max micro-batch for every (stack, seq_len). On CPU, `cpu_budget_gib` sets a simulated device size.
    `accelerator_for(stack)`: the run's Accelerator (under a launch), so the probes go through its engine.
    Each stack's model is released before the next stack loads (`stack_model`)."""
    check_seq_lens(seq_lens)  # before any model is loaded
    if not cpu_budget_gib and not torch.cuda.is_available():  # and this too: plan() would refuse after the load
        raise ValueError("planning on CPU needs a simulated device size: pass --cpu-budget-gib N (e.g. 4), or run "
                         "on a GPU")
    rows: list[PlanResult] = []
    for spec in stacks:
        stack = Stack.coerce(spec)
        # under an engine, each length plans a fresh copy: the engine sharded or wrapped the previous one
        for group in ([[seq] for seq in seq_lens] if accelerator_for else [seq_lens]):
            with stack_model(model, stack, random_init) as net:
                for seq in group:
                    rows.append(_plan_one(net, stack, seq, accelerator_for(stack) if accelerator_for else None,
                                          cpu_budget_gib=cpu_budget_gib, margin=margin, limit=limit, fresh=fresh,
                                          eval_batch_size=eval_batch_size,
                                          target_effective_batch=target_effective_batch))
    print(format_table(rows))
    if out_dir and rank_and_world()[0] == 0:  # under a launch every rank has the same rows: one writes them
        meta = {"title": title or f"memfit bench: {model}", "model": model, "random_init": random_init,
                "margin": margin, "seq_lens": seq_lens}
        paths = write_report(rows, out_dir, name, meta)
        print("wrote " + ", ".join(str(p) for p in paths.values()))
    return rows


@contextlib.contextmanager
def stack_model(model: str, stack: Stack, random_init: bool = False):
    """The model loaded with the stack applied, released on exit: every strategy's effects taken back
    (Stack.release) and compiled graphs dropped, so nothing of one stack reaches the next in this process. What the
    stack declares for the process (compile's dynamo recompile limit) is in force first."""
    configure_runtime(stack)
    net = load_model(model, stack, random_init=random_init)
    try:
        yield net
    finally:
        stack.release(net)
        del net
        torch._dynamo.reset()  # graphs guarded on the ids of freed modules, which the next model's modules may reuse
        free_device()


def _plan_one(net, stack: Stack, seq: int, acc, *, cpu_budget_gib, **kwargs) -> PlanResult:
    meter = SimulatedMeter(cpu_budget_gib * 2**30) if cpu_budget_gib else None
    res = plan(net, stack, seq_len=seq, meter=meter, accelerator=acc, **kwargs)
    if acc is not None:
        acc.free_memory()  # drop the engine's references to the planned model and optimizer
    log.info("%s seq %d: max micro-batch %d (%d probes, %.0f s)", stack.spec, seq, res.max_micro_batch,
             res.probe_count, res.search_seconds)
    print(f"{stack.spec} seq {seq}: analytic memory terms at micro-batch {res.max_micro_batch} (term, MiB, "
          f"contributed by)\n" + estimate(stack, net.config, seq, engine=res.engine, world=res.num_processes
                                         if acc else 1).contributions(res.max_micro_batch))
    return res
