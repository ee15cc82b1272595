"""Planning under the engine that trains (DDP, DeepSpeed ZeRO, FSDP2): which engine a launch is, in the analytic
model's vocabulary (memfit.plan.memory.SHARDED), and the model and optimizer the probes step, prepared by that
engine's Accelerator so each probe holds what training holds: the local shard of weights, gradients and optimizer
state, the gathered layers, the DDP buckets.

The Accelerator comes from the caller (memfit.training.loop.make_accelerator: the one the run uses); this module
only duck-types it, so the planner stays below training and launch. Preparing shards the model in place (FSDP2) or
wraps it (DDP, DeepSpeed): plan on a model that is then trained by that same Accelerator, or on a throw-away copy.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable

from ..core.launch import Launch
from ..core.step import Engine


def engine_of(launch: Launch) -> str:
    """'single', 'ddp', 'zero1'/'zero2'/'zero3' or 'fsdp' for a launch (ZeRO-0 is plain data parallelism)."""
    kind = launch.distributed_type
    if kind == "FSDP":
        return "fsdp"
    if kind == "DEEPSPEED":
        return f"zero{launch.zero_stage}" if launch.zero_stage in (1, 2, 3) else "ddp"
    if launch.num_processes > 1 or kind in ("MULTI_GPU", "MULTI_CPU", "MULTI_XPU", "MULTI_NPU"):
        return "ddp"
    return "single"


def engine_and_world(accelerator) -> tuple[str, int]:
    """The engine and the number of processes it spreads state over; ('single', 1) without an Accelerator."""
    if accelerator is None:
        return "single", 1
    return engine_of(Launch.from_accelerator(accelerator)), accelerator.num_processes


def prepare_for_probes(accelerator, model, optimizer, meter=None) -> tuple[Any, Any, Engine, Callable]:
    """(model, optimizer, engine, around_probe) as the engine trains them; the probes step through `engine` (the
    training step's, without collectives inside the step: a rank that OOMs must not leave the others waiting).

    DeepSpeed sizes its engine from train_micro_batch_size_per_gpu, which accelerate fills from a dataloader that
    planning does not have: it is set to 1 (memory does not depend on it). Under DDP each probe runs in no_sync:
    the buckets exist from construction (they are measured), and a rank that OOMs in its forward then cannot leave
    the other waiting in a gradient all-reduce; ZeRO and FSDP2 gather inside the forward, so there a probe that
    OOMs on one rank only would stall the group: the simulated meter then defers its OOM to the step's end (on a
    GPU a real OOM cannot wait: ranks need equal budgets there, and the NCCL timeout ends a stalled probe)."""
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    config = plugin.deepspeed_config if plugin is not None else {}
    before = config.get("train_micro_batch_size_per_gpu", "auto")
    if plugin is not None and before in (None, "auto"):
        config["train_micro_batch_size_per_gpu"] = 1
    try:
        model, optimizer = accelerator.prepare(model, optimizer)
    finally:  # the shared plugin config must not keep 1: training's prepare fills it from its own dataloader
        if plugin is not None:
            config["train_micro_batch_size_per_gpu"] = before
    engine, _ = engine_and_world(accelerator)
    if engine in ("zero3", "fsdp") and hasattr(meter, "defer"):
        meter.defer = True
    around = (lambda: accelerator.no_sync(model)) if engine == "ddp" else contextlib.nullcontext
    return model, optimizer, Engine(accelerator, agree=False), around
