"""Gradient accumulation: several micro-batches per optimizer step, given as steps or as a target effective batch.

With a target, steps = ceil(target / (micro_batch x processes)); the planner resolves it once the micro-batch is
known. The stack's exclusive `accumulation_steps` hook is the only route to the loop, whose training step
(memfit.core.step) owns the window and normalises the loss by the token count of the whole effective batch.
"""

from __future__ import annotations

from typing import ClassVar, Optional

from pydantic import BaseModel, Field, model_validator

from ..core.protocol import PHASE_SCHEDULE, steps_to_reach, strategy_config
from ..core.registry import register_strategy


@register_strategy(aliases=("ga",))
class GradientAccumulation(BaseModel):
    model_config = strategy_config()
    name: ClassVar[str] = "ga"
    phase: ClassVar[int] = PHASE_SCHEDULE
    auto_candidate: ClassVar[bool] = False  # the search sets the steps from the target
    shorthand: ClassVar[str] = "steps"
    accumulation_target: ClassVar[str] = "effective_batch"  # the recipe plans for it and adds 'ga' through it

    steps: Optional[int] = Field(None, ge=1)
    effective_batch: Optional[int] = Field(None, ge=1)

    @model_validator(mode="after")
    def _one_of(self):
        if (self.steps is None) == (self.effective_batch is None):
            raise ValueError("give exactly one of steps (e.g. 'ga8') or effective_batch (e.g. 'ga:effective_batch=64')")
        return self

    def describe(self) -> str:
        if self.steps is not None:
            return f"{self.steps} micro-batches per optimizer step"
        return f"accumulate to an effective batch of {self.effective_batch} sequences"

    def spec_item(self) -> str:
        return f"ga{self.steps}" if self.steps is not None else f"ga:effective_batch={self.effective_batch}"

    def accumulation_steps(self, micro_batch: int, num_processes: int = 1) -> int:
        if self.steps is not None:
            return self.steps
        return steps_to_reach(self.effective_batch, micro_batch, num_processes)
