"""The model-loading side of `memfit plan --auto` and `memfit plan --max-seq-len`: one model load per probed stack,
real probes through `plan`/`plan_max_seq_len`, one progress line per probe, and the reports."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from ..core.files import atomic_write_json
from ..core.protocol import hooks_of
from ..core.stack import Stack
from ..models import load_config, load_model
from .auto import DEFAULT_PROBE_BUDGET, PRUNE_TOLERANCE, AutoResult, auto_search
from .bench import free_device
from .memory import GiB, estimate
from ..runtime import configure_runtime
from .planner import PlanResult, plan
from .probe import SimulatedMeter, Timing, TimingMeter, probe_line, run_probe, time_steps
from .report import format_frontier, write_auto_report
from .rope import config_overrides
from .seq_len import SeqLenResult, plan_max_seq_len


def release(net, stack: Stack) -> None:
    """Undo what a probed stack did beyond its own model before the next candidate loads.

    Deleting the model is not enough: liger's RoPE patch is module-level in transformers' Llama code, so it ran
    inside every later candidate's compiled attention (the H200 auto search died in a later compile+gc candidate's
    backward with an in-place error), and dynamo's cache keeps graphs guarded on the ids of freed modules, which
    the next model's modules can reuse. Every strategy's restore_model runs (last applied first), also in stacks
    that Stack.remove_model refuses because 4/8-bit layers cannot be put back: only process-wide effects matter."""
    ctx = stack.context(next(net.parameters()).device)
    for s in reversed([s for s in stack if "restore_model" in hooks_of(s)]):
        net = s.restore_model(net, ctx)
    torch._dynamo.reset()


def _meter(cpu_budget_gib: Optional[float]):
    return SimulatedMeter(cpu_budget_gib * GiB) if cpu_budget_gib else None


def _budget(margin: float, cpu_budget_gib: Optional[float]) -> float:
    if torch.cuda.is_available():
        return torch.cuda.get_device_properties(0).total_memory * (1 - margin)
    if not cpu_budget_gib:
        raise ValueError("planning on CPU needs a simulated device size: pass --cpu-budget-gib N (or run on a GPU)")
    return cpu_budget_gib * GiB


def steady_speed(net, stack: Stack, res: PlanResult, packed: bool = False) -> Timing:
    """Time the size the run would train at (res.micro_batch) with warm-up steps of that one shape, as training
    runs them (TimingMeter: no cache flush between steps). Its own lr=0 optimizer: the plan's state was cleared,
    and planning must not change the weights. No eval forward: this is training's speed."""
    ctx = stack.context(next(net.parameters()).device, num_processes=res.num_processes)
    optimizer = stack.make_optimizer(net, ctx, lr=0.0)
    try:
        with TimingMeter() as meter:
            return time_steps(lambda: run_probe(net, optimizer, stack, ctx, meter, res.micro_batch, res.seq_len,
                                                packed=packed), res.micro_batch)
    finally:
        optimizer.state.clear()


def choose_stack(model: str, base: str, *, seq_len: int, target_effective_batch: int, random_init: bool = False,
                 margin: float = 0.03, eval_batch_size: int = 0, cpu_budget_gib: Optional[float] = None,
                 probe_budget: int = DEFAULT_PROBE_BUDGET, fresh: bool = False, out_dir: Optional[str | Path] = None,
                 json_path: Optional[str | Path] = None, name: str = "auto", packed: bool = False) -> AutoResult:
    """The fastest exact-first stack for `target_effective_batch` at `seq_len` (memfit.plan.auto). `packed`: the run
    trains on packed blocks (the recipe does), so the probes take the same block-causal attention path."""
    on_cuda = torch.cuda.is_available()
    budget = _budget(margin, cpu_budget_gib)
    config = load_config(model)
    base_stack = Stack.coerce(base)

    def predict(stack: Stack) -> int:
        return estimate(stack, config, seq_len, stack.context("cuda" if on_cuda else "cpu")).max_micro_batch(
            budget * (1 + PRUNE_TOLERANCE))

    # The search stops at the micro-batch the target needs: a larger one would only be trained with the same
    # accumulation, and the probes past it were the slowest of the H200 run (gc+cce+compile bisected 496..503,
    # 11 s a probe, for a target of 64).
    needed = target_effective_batch

    def measure(stack: Stack) -> PlanResult:
        # what this candidate declares (compile's dynamo recompile limit: dynamo's default of 8 was hit on the H200);
        # the limit is a dynamo setting, safe to raise after CUDA has initialised
        configure_runtime(stack)
        net = load_model(model, stack, random_init=random_init)
        try:
            res = plan(net, stack, seq_len=seq_len, margin=margin, eval_batch_size=eval_batch_size, limit=needed,
                       meter=_meter(cpu_budget_gib), target_effective_batch=target_effective_batch, fresh=fresh,
                       packed=packed, progress=lambda p: print(probe_line(p, stack=stack.spec), flush=True))
            if res.micro_batch:
                timing = steady_speed(net, stack, res, packed)
                res.timed_tokens_per_s, res.timing_steps = timing.tokens_per_s, timing.steps
                speed = f"{timing.tokens_per_s:,.0f} tokens/s" if timing.tokens_per_s else timing.error
                print(f"  timing {stack.spec} micro-batch {res.micro_batch}: {speed} ({timing.steps} steps)",
                      flush=True)
            return res
        finally:
            release(net, stack)
            del net
            free_device()

    result = auto_search(base_stack, seq_len=seq_len, target_effective_batch=target_effective_batch,
                         measure=measure, predict=predict, on_cuda=on_cuda, probe_budget=probe_budget,
                         search_limit=needed, n_layers=config.num_hidden_layers,
                         log=lambda line: print(line, flush=True))
    print(format_frontier(result))
    if out_dir or json_path:
        meta = {"model": model, "base": base_stack.spec, "margin": margin, "random_init": random_init,
                "device": torch.cuda.get_device_name(0) if on_cuda else "cpu (simulated)"}
        paths = write_auto_report(result, out_dir or Path(json_path).parent, name, meta, json_path)
        print("wrote " + ", ".join(str(p) for p in paths.values()))
    return result


def longest_context(model: str, stacks: list[str], *, micro_batch: int = 1, random_init: bool = False,
                    margin: float = 0.03, eval_batch_size: int = 0, cpu_budget_gib: Optional[float] = None,
                    fresh: bool = False, json_path: Optional[str | Path] = None,
                    rope_scaling: Optional[dict] = None) -> list[SeqLenResult]:
    """Per stack, the exact largest sequence length that trains at `micro_batch`; with `rope_scaling`
    (memfit.plan.rope) the model is built with it and the search may pass the native maximum."""
    if not torch.cuda.is_available() and not cpu_budget_gib:
        raise ValueError("planning on CPU needs a simulated device size: pass --cpu-budget-gib N (or run on a GPU)")
    overrides = config_overrides(load_config(model), rope_scaling) if rope_scaling else None  # refused before loading
    rows = []
    for spec in stacks:
        stack = Stack.coerce(spec)
        configure_runtime(stack)  # as measure() in choose_stack
        net = load_model(model, stack, random_init=random_init, config_overrides=overrides)
        try:
            rows.append(plan_max_seq_len(net, stack, micro_batch=micro_batch, margin=margin,
                                         meter=_meter(cpu_budget_gib), eval_batch_size=eval_batch_size, fresh=fresh,
                                         progress=lambda p: print(probe_line(p, "seq len", stack.spec), flush=True)))
        finally:
            release(net, stack)
            del net
            free_device()
        r = rows[-1]
        print(f"{r.stack}: max seq len {r.max_seq_len} at micro-batch {micro_batch} "
              f"(peak {r.peak_gib or 0:.2f} GiB, predicted {r.predicted_max}, {r.probe_count} probes, "
              f"{r.search_seconds:.0f} s{', cached' if r.cache_hit else ''})", flush=True)
        if r.at_position_limit:
            print(f"  stopped at the model's {r.position_limit:,} positions, not at memory: --rope-scaling "
                  f"(e.g. yarn:factor=2) lets the search go past them", flush=True)
    if json_path:
        atomic_write_json(json_path, {"model": model, "results": [r.to_dict() for r in rows]})
    return rows
