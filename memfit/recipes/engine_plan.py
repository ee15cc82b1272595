"""The run's plan, probed under the engine that trains it (issue 20).

On one process the planner probes the loaded model directly. Under a multi-process launch (DDP, ZeRO, FSDP2) the
probes must see what training holds (the local shard of weights, gradients and optimizer state, the gathered
layers, the DDP buckets), so they step a model prepared by that engine's Accelerator. Preparing shards a model in
place (FSDP2) or wraps it (DDP, DeepSpeed), and the training Accelerator needs the planned micro-batch to be built
(DeepSpeed's config, the accumulation steps): so a throw-away copy of the model is loaded and planned under a
planning Accelerator, both are dropped, and the run's model is prepared once, by the training Accelerator.
"""

from __future__ import annotations

from typing import Callable

from ..core.launch import Launch
from ..core.stack import Stack
from ..launch.distributed import reset_accelerator_state
from ..plan.bench import free_device
from ..plan.planner import PlanResult, plan
from ..plan.sharded import engine_of
from ..training.loop import make_accelerator


def launch_engine(state) -> str:
    """'single', 'ddp', 'zero1'-'zero3' or 'fsdp' for the running launch (accelerate's environment)."""
    launch = Launch.from_env()
    if state.num_processes > 1 and launch.num_processes == 1:  # a group built without the launcher's variables
        return "ddp"
    return engine_of(launch)


def plan_run(model, stack: Stack, state, load_copy: Callable[[], object], **plan_kwargs) -> PlanResult:
    """Plan `model` (one process) or a fresh `load_copy()` under the launch's engine (several processes)."""
    engine = launch_engine(state)
    if engine == "single":
        return plan(model, stack, **plan_kwargs)
    planner_acc = make_accelerator(stack, 1)
    copy = load_copy()
    try:
        return plan(copy, stack, accelerator=planner_acc, **plan_kwargs)
    finally:
        del copy
        planner_acc.free_memory()  # drops its references to the prepared copy (and DeepSpeed's engine)
        del planner_acc
        # the training Accelerator is built from scratch with the planned micro-batch; the process group stays
        reset_accelerator_state()
        free_device()
