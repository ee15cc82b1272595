"""Capacity planner: the exact largest micro-batch that trains without OOM, per strategy stack.

Search: a warm-up probe at b=1 (allocates optimizer state, warms kernels), then the analytic prediction, then
interpolation on the measured peak-vs-batch line (memory is linear in b for a fixed sequence length), safeguarded by
bisection inside the [fits, OOM] bracket until the bracket is one wide. Every rank probes and the ranks agree on
each answer (MIN of "fits"), so all take the same path and end on the same size.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from .cache import read_plan_cache, write_plan_cache
from .memory import GiB, estimate
from ..models import cache_root
from .probe import CudaMeter, Probe, SimulatedMeter, run_probe
from .sharded import engine_and_world, prepare_for_probes
from ..core.protocol import steps_to_reach
from ..core.processes import rank_and_world
from ..core.stack import Stack
from .ranks import agree, reduce_value


@dataclass
class PlanResult:
    stack: str
    seq_len: int
    max_micro_batch: int
    grad_accum: int  # at micro_batch
    effective_batch: int  # micro_batch x grad_accum x num_processes
    num_processes: int = 1
    micro_batch: Optional[int] = None  # the size to train at (training_size); None: the max (plans before it existed)
    engine: str = "single"  # what prepared the probed model: single, ddp, zero1-3, fsdp (memfit.plan.sharded)
    peak_gib: Optional[float] = None
    budget_gib: float = 0.0
    margin: float = 0.0
    predicted_max: Optional[int] = None
    predicted_error_pct: Optional[float] = None
    memory_breakdown_gib: dict[str, float] = field(default_factory=dict)
    tokens_per_s: Optional[float] = None
    best_micro_batch: Optional[int] = None  # throughput-best among the sizes that fit
    best_tokens_per_s: Optional[float] = None
    best_grad_accum: Optional[int] = None
    probes: list[dict[str, Any]] = field(default_factory=list)
    search_seconds: float = 0.0
    device: str = "cpu"
    versions: dict[str, str] = field(default_factory=dict)
    cache_hit: bool = False
    cache_path: Optional[str] = None  # the JSON this plan is cached in (the loop's OOM back-off updates it)
    # steady speed at micro_batch, timed by the caller (memfit.plan.choose.steady_speed): the auto search ranks by it
    timed_tokens_per_s: Optional[float] = None
    timing_steps: int = 0  # steps run for it, warm-up included (not probes: the probe budget is for the search)

    def __post_init__(self):  # the back-off lowers a cached max below the size chosen: train at the lower one
        self.micro_batch = min(self.micro_batch or self.max_micro_batch, self.max_micro_batch)

    @property
    def probe_count(self) -> int:
        return len(self.probes)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "probe_count": self.probe_count}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PlanResult":
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("torch", "transformers", "peft", "accelerate", "bitsandbytes", "deepspeed", "memfit"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    if torch.cuda.is_available():
        out["cuda"] = str(torch.version.cuda)
    return out


ALLOCATOR_SLACK = 0.012  # the allocator OOMs ~1% below the budget (block rounding, workspaces): aim just under


def search_max(probe: Callable[[int], Probe], *, predicted: Optional[int] = None, budget: Optional[float] = None,
               baseline: Callable[[], float] = lambda: 0.0, limit: int = 65536) -> tuple[int, list[Probe]]:
    """Exact largest b in [0, limit] with probe(b).fits, assuming fitting is monotone in b.

    Probes: b=1 (warm-up), half the analytic prediction (a point in the linear regime; without a prediction, half
    of what b=1 suggests), then the boundary interpolated on the measured peak line, then a gallop (s, 2s, 4s, ...
    away from that guess) until the boundary is bracketed, then bisection. Memory is linear in b at a fixed sequence
    length, so the guess is usually within a few samples and the whole search takes 5-8 probes."""
    probes: list[Probe] = []
    points: list[tuple[int, float]] = []
    lo, hi = 0, limit + 1  # invariant: lo fits (0 trivially), hi does not (limit + 1 by definition)

    def ask(b: int) -> bool:
        nonlocal lo, hi
        p = probe(b)
        probes.append(p)
        if p.fits:
            lo = max(lo, b)
            if p.peak_bytes:
                points.append((b, p.peak_bytes))
        else:
            hi = min(hi, b)
        return p.fits

    usable = budget * (1 - ALLOCATOR_SLACK) if budget else None
    if not ask(1):
        return 0, probes
    rough = predicted if predicted and predicted >= 4 else _interpolate(points, usable, baseline)
    if rough and rough >= 4:
        ask(min(rough // 2, limit))
    while len(points) < 2 and hi <= limit and hi - lo > 1:  # overshot: halve until a second point fits
        ask((lo + hi) // 2)
    if hi - lo > 1:
        guess = _interpolate(points, usable, baseline)
        start = guess if guess is not None else (lo * 2 if hi > limit else (lo + hi) // 2)
        start = max(lo + 1, min(start, hi - 1, limit))
        up, step = ask(start), max(1, start // 256)  # first step ~0.4%: the typical error of the guess
        while hi - lo > 1:  # gallop away from the guess until the boundary is bracketed
            b = start + step if up else start - step
            if not lo < b < hi or ask(b) != up:
                break
            step *= 2
    while hi - lo > 1:  # doubling stops at the limit: a search never reports (or probes) more than it may
        ask(min(lo * 2, limit) if hi > limit else (lo + hi) // 2)
    return lo, probes


def retry_boundary(probe: Callable[[int], Probe], probes: list[Probe], best: int, limit: int) -> int:
    """Fragmentation after OOMs can make a size fail that fits from a clean start (accelerate's finder rejected 22
    after 20 OOMs although 22 fits), never the reverse. So the size just above the answer is probed once more when
    its OOM came after other OOMs; a size that fits then raises the answer and its neighbour gets the same check."""
    retried: set[int] = set()
    while 0 < best < limit and best + 1 not in retried:
        failed = [i for i, p in enumerate(probes) if p.micro_batch == best + 1 and not p.fits]
        if not failed or all(p.fits for p in probes[:failed[-1]]):
            break  # that OOM happened with no earlier OOM in the process: nothing to distrust
        retried.add(best + 1)
        probes.append(again := probe(best + 1))
        if not again.fits:
            break
        best += 1
    return best


def _interpolate(points: list[tuple[int, float]], budget: Optional[float], baseline) -> Optional[int]:
    """Where the line through the largest measured (b, peak) point and the one farthest from it crosses the
    budget (adjacent points give a noisy slope)."""
    if budget is None or not points:
        return None
    distinct = sorted(dict(points).items())
    (b1, p1) = distinct[-1]
    b0, p0 = distinct[0] if len(distinct) > 1 else (0, baseline())
    if b1 == b0 or p1 <= p0:
        return None
    return int(b0 + (budget - p0) * (b1 - b0) / (p1 - p0))


def plan_key(model_config, stack: Stack, seq_len: int, device: str, extra: dict[str, Any]) -> str:
    cfg = model_config.to_json_string(use_diff=False) if hasattr(model_config, "to_json_string") else str(model_config)
    blob = json.dumps({"config": cfg, "stack": stack.key, "seq": seq_len, "device": device, **extra,
                       "versions": versions()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"{props.name} ({props.total_memory / GiB:.1f} GiB)"
    return "cpu"


def check_seq_lens(seq_lens, max_positions: Optional[int] = None) -> None:
    """Sequence lengths a model can take: positive, and within its position embeddings when those are known."""
    for seq in seq_lens:
        if not isinstance(seq, int) or seq < 1:
            raise ValueError(f"sequence length {seq!r} is not a positive whole number: pass e.g. --seq-len 512")
        if max_positions and seq > max_positions:
            raise ValueError(f"sequence length {seq} exceeds the model's max_position_embeddings ({max_positions}): "
                             f"pass --seq-len {max_positions} or less")


def plan(model, stack: Stack | str, *, seq_len: int, target_effective_batch: Optional[int] = None,
         margin: float = 0.03, eval_batch_size: int = 0, meter=None, limit: int = 8192,
         cache_dir: Optional[str | Path] = None, fresh: bool = False, num_processes: Optional[int] = None,
         progress: Optional[Callable[[Probe], None]] = None, packed: bool = False,
         accelerator=None) -> PlanResult:
    """Find the largest micro-batch for `model` (already transformed by `stack`) at `seq_len` on its device.

    `accelerator`: the run's (memfit.training.loop.make_accelerator); the probes then step the model and optimizer
    it prepares (DDP, ZeRO, FSDP2: memfit.plan.sharded), and the estimate and the cache key follow its engine.
    Preparing shards or wraps `model`: train it with that same Accelerator, or plan on a copy."""
    check_seq_lens([seq_len], getattr(getattr(model, "config", None), "max_position_embeddings", None))
    stack = Stack.coerce(stack)
    device = accelerator.device if accelerator is not None else next(model.parameters()).device
    engine, shards = engine_and_world(accelerator)
    world = num_processes or (shards if accelerator is not None else rank_and_world()[1])
    ctx = stack.context(device, num_processes=world)
    config = getattr(model, "config", None)
    key = plan_key(config, stack, seq_len, _device_name(device),
                   {"margin": margin, "eval": eval_batch_size, "world": world, "simulated": getattr(meter, "budget", None)
                    if isinstance(meter, SimulatedMeter) else None, "target": target_effective_batch,
                    "limit": limit,  # a search stopped at the target (--auto) must not answer a full one
                    **({"packed": True} if packed else {}),
                    **({"engine": engine, "shards": shards} if engine != "single" else {})})
    path = Path(cache_dir or cache_root() / "plans") / f"{key}.json"
    cached = None if fresh else read_plan_cache(path)  # a corrupt or unchecked entry: None (and removed)
    if reduce_value(float(cached is not None), "MIN", device):  # every rank hits, or all re-probe
        return PlanResult.from_dict({**cached, "cache_hit": True, "cache_path": str(path)})

    meter = meter or (CudaMeter(device, margin) if device.type == "cuda" else None)
    if meter is None:
        raise ValueError("planning on CPU needs a SimulatedMeter(budget_bytes): CPU memory has no OOM boundary to "
                         "search for; run on a GPU or pass meter=SimulatedMeter(...) (CLI: --cpu-budget-gib N)")
    est = estimate(stack, config, seq_len, ctx, engine=engine, world=shards)
    budget = reduce_value(meter.budget, "MIN", device)  # the smallest device decides
    predicted = int(reduce_value(est.max_micro_batch(budget), "MIN", device))
    optimizer = stack.make_optimizer(model, ctx, lr=0.0)  # lr=0: planning must not change the weights
    step_engine, around = None, contextlib.nullcontext
    if accelerator is not None:
        model, optimizer, step_engine, around = prepare_for_probes(accelerator, model, optimizer, meter)

    def probe(b: int) -> Probe:
        with around():
            p = run_probe(model, optimizer, stack, ctx, meter, b, seq_len, eval_batch_size, packed, step_engine)
        p.fits, p.peak_bytes = agree(p.fits, p.peak_bytes, device)
        if progress:  # one line per probe as it happens: a long search must show it is alive
            progress(p)
        return p

    start = time.perf_counter()
    try:
        with meter:  # a CudaMeter caps the process's device memory for the probes only
            best, probes = search_max(probe, predicted=predicted or None, budget=budget,
                                      baseline=lambda: reduce_value(meter.baseline(), "MAX", device),
                                      limit=limit)
            if device.type == "cuda":
                best = retry_boundary(probe, probes, best, limit)
    finally:
        optimizer.state.clear()  # the planner's optimizer state must not outlive the plan
    result = _result(stack, seq_len, best, probes, est, meter, target_effective_batch, world, predicted, device)
    result.search_seconds, result.engine = time.perf_counter() - start, engine
    if best >= limit:  # the search stopped at the cap, not at the maximum: the prediction's error is unknown
        result.predicted_error_pct = None
    result.cache_path = str(path)
    if rank_and_world()[0] == 0:
        write_plan_cache(path, result.to_dict())
    return result


def training_size(stack: Stack, max_micro_batch: int, world: int, target: Optional[int]) -> tuple[int, int]:
    """(micro-batch, accumulation) to train at. Target T on W processes: the fewest steps that reach T at the max,
    k = ceil(T / (max * W)), then the smallest micro-batch reaching T in k, m = ceil(T / (k * W)) <= max (max 59,
    T 64: 32 x 2, not 59 x 2 = 118; ga:effective_batch=T gives the same k at m). No target: the max, the stack's k."""
    if max_micro_batch < 1:
        return 0, 0
    if not target:
        return max_micro_batch, stack.accumulation_steps(max_micro_batch, world)
    k = steps_to_reach(target, max_micro_batch, world)
    return -(-target // (k * world)), k


def _result(stack, seq_len, best, probes, est, meter, target, world, predicted, device) -> PlanResult:
    fitting = [p for p in probes if p.fits and p.tokens_per_s and p.micro_batch > 1]
    at_max = [p for p in probes if p.fits and p.micro_batch == best]
    fastest = max(fitting, key=lambda p: p.tokens_per_s, default=None)
    micro, k = training_size(stack, best, world, target)
    res = PlanResult(stack=stack.spec, seq_len=seq_len, max_micro_batch=best, grad_accum=k,
                     effective_batch=micro * k * world, num_processes=world, micro_batch=micro,
                     peak_gib=at_max[-1].peak_bytes / GiB if at_max and at_max[-1].peak_bytes else None,
                     budget_gib=meter.budget / GiB, margin=getattr(meter, "margin", 0.0), predicted_max=predicted,
                     memory_breakdown_gib=est.breakdown(best), probes=[asdict(p) for p in probes],
                     tokens_per_s=at_max[-1].tokens_per_s if at_max else None, device=_device_name(device),
                     versions=versions())
    if best and predicted is not None:
        res.predicted_error_pct = 100.0 * (predicted - best) / best
    if fastest:
        # fill the effective batch the max size would give, with the fastest size plus accumulation
        res.best_micro_batch, res.best_tokens_per_s = fastest.micro_batch, fastest.tokens_per_s
        res.best_grad_accum = steps_to_reach(res.effective_batch, fastest.micro_batch, world)
    return res
