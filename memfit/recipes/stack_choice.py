"""The run's stack: `stack: auto` asks the planner (memfit.plan.choose) for the fastest exact-first stack on top of
AUTO_BASE; any stack without its own accumulation strategy gets the one that reaches an effective batch (declared)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.protocol import declared
from ..core.registry import available
from ..core.stack import Stack
from ..strategies.defaults import AUTO_BASE

if TYPE_CHECKING:
    from .run_config import FinetuneConfig



def auto_stack(cfg: "FinetuneConfig", state) -> str:
    """`stack: auto`: the planner's fastest exact-first stack for this run's sequence length and effective batch."""
    from ..plan.choose import choose_stack

    if state.num_processes > 1:  # each rank measures its own tokens/s: ranks could choose different stacks
        raise ValueError("stack: auto runs in one process for now: run `memfit plan --auto` on one GPU and pass "
                         "its winner as the stack")
    device = "cuda" if state.device.type == "cuda" else "cpu"
    plan = cfg.plan
    chosen = choose_stack(cfg.model.source, AUTO_BASE[device], seq_len=cfg.data.seq_len,
                          target_effective_batch=plan.target_effective_batch, margin=plan.margin,
                          random_init=cfg.model.random, eval_batch_size=cfg.eval.eval_batch_size,
                          cpu_budget_gib=None if device == "cuda" else plan.cpu_budget_gib, fresh=plan.fresh,
                          packed=True)  # as the plan phase: packed and padded blocks both take the 4-D mask path
    if chosen.winner is None:
        raise ValueError(f"stack: auto found nothing that trains: {chosen.why}")
    return chosen.winner


def with_effective_batch(stack: Stack, target: int) -> Stack:
    """The same stack with its accumulation strategy asked for `target` sequences per optimizer step."""
    def retargeted(s):
        field = declared(s, "accumulation_target")
        return s.model_copy(update={field: target}) if field and getattr(s, field) is not None else s
    return Stack([retargeted(s) for s in stack.strategies])


def with_accumulation(spec: str, target: int) -> Stack:
    """The stack's own schedule strategy decides accumulation (planner and Accelerator read it); without one, a 'ga'
    reaching `target`."""
    stack = Stack.coerce(spec)
    if stack.decides_accumulation:
        return stack
    accumulate = next(cls for cls in available().values() if declared(cls, "accumulation_target"))
    return Stack([*stack.strategies, accumulate(**{declared(accumulate, "accumulation_target"): target})])
