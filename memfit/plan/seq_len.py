"""Longest context: the exact largest sequence length that trains at a given micro-batch (1 by default).

The same search as the micro-batch planner (memfit.plan.planner.search_max: warm-up, analytic guess, interpolation
on the measured peak line, gallop, bisection), run over the sequence length: at a fixed micro-batch, memory is
linear in the number of tokens with flash/SDPA attention, and fitting is monotone either way. The same meter (so the
same margin and real OOMs), the same rank agreement and the same plan cache as `plan`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from ..core.stack import Stack
from ..models import cache_root
from .memory import GiB, estimate
from .ranks import agree, distributed, reduce_value
from .planner import (CudaMeter, _device_name, plan_key, retry_boundary, search_max,
                      write_plan_cache)
from .cache import read_plan_cache
from .probe import Probe, run_probe


@dataclass
class SeqLenResult:
    stack: str
    micro_batch: int
    max_seq_len: int
    peak_gib: Optional[float] = None
    budget_gib: float = 0.0
    margin: float = 0.0
    predicted_max: Optional[int] = None
    probes: list[dict[str, Any]] = field(default_factory=list)
    search_seconds: float = 0.0
    device: str = "cpu"
    cache_hit: bool = False
    cache_path: Optional[str] = None
    position_limit: int = 0  # the model's max_position_embeddings: the search never goes past it
    rope_scaling: Optional[dict[str, Any]] = None  # the scaling that raised it (memfit.plan.rope), if any

    @property
    def at_position_limit(self) -> bool:
        """The search stopped at the positions the model has, not at memory: more fits with --rope-scaling."""
        return bool(self.position_limit) and self.max_seq_len >= self.position_limit

    @property
    def probe_count(self) -> int:
        return len(self.probes)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "probe_count": self.probe_count}


def _scaling_of(config) -> Optional[dict[str, Any]]:
    from .rope import EXTENDING_TYPES, current_rope_parameters

    params = current_rope_parameters(config) if config is not None else {}
    return params if params.get("rope_type") in EXTENDING_TYPES else None


def predicted_max_seq_len(stack: Stack, config, micro_batch: int, budget: float, ctx) -> int:
    """Analytic: at seq len 1 the model's 'max micro-batch' is the number of tokens that fit."""
    return estimate(stack, config, 1, ctx).max_micro_batch(budget) // max(1, micro_batch)


def plan_max_seq_len(model, stack: Stack | str, *, micro_batch: int = 1, margin: float = 0.03, meter=None,
                     eval_batch_size: int = 0, limit: Optional[int] = None, cache_dir: Optional[str | Path] = None,
                     fresh: bool = False, progress: Optional[Callable[[Probe], None]] = None) -> SeqLenResult:
    """Find the largest sequence length `model` (already transformed by `stack`) trains at `micro_batch`.
    `limit` defaults to the model's max_position_embeddings and may not exceed it: past it the model has no rotation
    for the positions; a model loaded with a RoPE scaling (memfit.plan.rope) has a larger maximum."""
    stack = Stack.coerce(stack)
    device = next(model.parameters()).device
    config = getattr(model, "config", None)
    positions = int(getattr(config, "max_position_embeddings", 0) or 131072)
    if limit and limit > positions:
        raise ValueError(f"a context limit of {limit:,} is past the model's {positions:,} positions: load the model "
                         f"with a RoPE scaling (CLI: --rope-scaling yarn:factor=N)")
    limit = limit or positions
    scaling = _scaling_of(config)
    world = torch.distributed.get_world_size() if distributed() else 1
    ctx = stack.context(device, num_processes=world)
    sim_budget = None if meter is None or isinstance(meter, CudaMeter) else meter.budget
    key = plan_key(config, stack, 0, _device_name(device), {"max_seq_len_at": micro_batch, "margin": margin,
                   "eval": eval_batch_size, "world": world, "simulated": sim_budget, "limit": limit,
                   "rope": scaling})
    path = Path(cache_dir or cache_root() / "plans") / f"{key}.json"
    cached = None if fresh else read_plan_cache(path)  # a corrupt or unchecked entry: None (and removed)
    if reduce_value(float(cached is not None), "MIN", device):
        return SeqLenResult(**{**{k: v for k, v in cached.items() if k != "probe_count"},
                               "cache_hit": True, "cache_path": str(path)})
    meter = meter or (CudaMeter(device, margin) if device.type == "cuda" else None)
    if meter is None:
        raise ValueError("planning on CPU needs a SimulatedMeter(budget_bytes): CPU memory has no OOM boundary to "
                         "search for; run on a GPU or pass meter=SimulatedMeter(...) (CLI: --cpu-budget-gib N)")
    budget = reduce_value(meter.budget, "MIN", device)
    predicted = int(reduce_value(predicted_max_seq_len(stack, config, micro_batch, budget, ctx), "MIN", device))
    optimizer = stack.make_optimizer(model, ctx, lr=0.0)  # lr=0: planning must not change the weights

    # The search runs over s = seq_len - 1 (s >= 1): a 1-token sequence predicts no token, its loss is 0/0, and
    # the NaN gradients would reach the weights through Adam even at lr=0.
    def probe(s: int) -> Probe:
        p = run_probe(model, optimizer, stack, ctx, meter, micro_batch, s + 1, eval_batch_size)
        p.fits, p.peak_bytes = agree(p.fits, p.peak_bytes, device)
        p.micro_batch = s + 1  # the searched size is the sequence length here
        if progress:
            progress(p)
        return p

    start = time.perf_counter()
    try:
        with meter:  # a CudaMeter caps the process's device memory for the probes only
            best, probes = search_max(probe, predicted=max(0, predicted - 1) or None, budget=budget,
                                      baseline=lambda: reduce_value(meter.baseline(), "MAX", device), limit=limit - 1)
            if device.type == "cuda":
                best = retry_boundary(probe, probes, best, limit - 1)
    finally:
        optimizer.state.clear()
    best = best + 1 if best else 0  # 0: not even two tokens train at this micro-batch
    at_best = [p for p in probes if p.fits and p.micro_batch == best and p.peak_bytes]
    res = SeqLenResult(stack.spec, micro_batch, best, at_best[-1].peak_bytes / GiB if at_best else None,
                       budget / GiB, getattr(meter, "margin", 0.0), predicted,
                       [{**asdict(p), "seq_len": p.micro_batch, "micro_batch": micro_batch} for p in probes], time.perf_counter() - start,
                       _device_name(device), cache_path=str(path), position_limit=limit, rope_scaling=scaling)
    if not distributed() or torch.distributed.get_rank() == 0:
        write_plan_cache(path, res.to_dict())
    return res
