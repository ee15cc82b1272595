"""The job's plan phase: one PlanResult carries the micro-batch and the block length from the planner to the loop.

The planner probes real OOMs for the largest micro-batch at the data's block length (or, with `plan.micro_batch`,
the size is fixed and nothing is probed); the loop is then built from that result alone - the Accelerator's
accumulation and TrainConfig.micro_batch from `micro_batch`, the blocks checked against `seq_len` - so the two can
never disagree."""
from __future__ import annotations

from typing import Callable, Optional

from ..core.protocol import steps_to_reach
from ..core.stack import Stack
from ..core.units import GiB
from ..plan.planner import PlanResult
from ..plan.probe import SimulatedMeter
from .engine_plan import plan_run
from ..core.errors import ConfigError
from .sections import PlanSection


def fixed_plan(stack: Stack, seq_len: int, micro_batch: int, world: int, target: Optional[int],
               device: str) -> PlanResult:
    """`plan.micro_batch`: the user's size, no probes; accumulation as the planner would set it for that size."""
    k = steps_to_reach(target, micro_batch, world) if target else stack.accumulation_steps(micro_batch, world)
    return PlanResult(stack=stack.spec, seq_len=seq_len, max_micro_batch=micro_batch, grad_accum=k,
                      effective_batch=micro_batch * k * world, num_processes=world, micro_batch=micro_batch,
                      device=device)


def plan_training(model, stack: Stack, state, load_copy: Callable[[], object], settings: PlanSection, *,
                  seq_len: int, eval_batch_size: int, packed: bool, target: Optional[int],
                  say: Callable[[str], None]) -> PlanResult:
    """The size the run trains at: probed under the launch's engine (memfit.recipes.engine_plan), or fixed."""
    if settings.micro_batch:
        planned = fixed_plan(stack, seq_len, settings.micro_batch, state.num_processes, target,
                             "cpu" if state.device.type != "cuda" else str(state.device))
        say(f"fixed micro-batch {planned.micro_batch} x {planned.grad_accum} accumulation x {planned.num_processes} "
            f"processes = {planned.effective_batch} (plan.micro_batch: the planner is skipped)")
        return planned
    meter = SimulatedMeter(settings.cpu_budget_gib * GiB) if state.device.type != "cuda" else None
    planned = plan_run(model, stack, state, load_copy, seq_len=seq_len, margin=settings.margin,
                       eval_batch_size=eval_batch_size, meter=meter, limit=settings.max_micro_batch,
                       cache_dir=settings.plan_cache, fresh=settings.fresh, target_effective_batch=target,
                       packed=packed)  # packed blocks are probed on the same (block-causal) attention path
    if planned.max_micro_batch < 1:
        raise ConfigError(f"not even one sequence of {seq_len} tokens fits with stack {stack.spec} "
                          f"({planned.budget_gib:.1f} GiB): lower --seq-len, add 'gc'/'q4', or use a larger device")
    capped = is_capped(planned, settings.max_micro_batch)
    say(f"planned micro-batch {planned.micro_batch} (max {planned.max_micro_batch}"
        f"{', the max_micro_batch cap' if capped else ''}) x {planned.grad_accum} accumulation x "
        f"{planned.num_processes} processes = {planned.effective_batch} "
        f"({'cached plan' if planned.cache_hit else f'{planned.probe_count} probes'})")
    return planned


def is_capped(planned: PlanResult, limit: Optional[int]) -> bool:
    """The search stopped at max_micro_batch: memory would allow more (a fixed size is no search)."""
    return bool(limit) and bool(planned.probes) and planned.max_micro_batch >= limit


def check_blocks(train, block_size: int, planned: PlanResult) -> None:
    """The boundary between plan and loop: the loop trains on blocks of exactly the planned length."""
    lengths = {block_size, *(len(train[i]["input_ids"]) for i in {0, len(train) - 1} if len(train))}
    if lengths != {planned.seq_len}:
        raise ConfigError(f"the training blocks hold {sorted(lengths)} tokens but the plan is for {planned.seq_len}: "
                          f"the data and the plan must use one --seq-len")
