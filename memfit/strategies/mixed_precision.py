"""One compute dtype for the whole model: weights loaded in it, autocast in it, residual stream kept in it.

fp16 gets accelerate's dynamic loss scaler. Loading the frozen weights in the autocast dtype matters: fp16
autocast over bf16 weights (or over fp32 norms) promotes the residual stream to fp32 and doubles activations.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import BaseModel

from ..core.launch import refuse_fsdp1_mixed_dtypes
from ..core.protocol import DTYPES, PHASE_DTYPE, StackError, strategy_config
from ..core.registry import register_strategy


@register_strategy(aliases={"amp": {}, "bf16": {"dtype": "bf16"}, "fp16": {"dtype": "fp16"}})
class MixedPrecision(BaseModel):
    model_config = strategy_config()
    name: ClassVar[str] = "mixed_precision"
    phase: ClassVar[int] = PHASE_DTYPE

    dtype: Literal["bf16", "fp16"] = "bf16"
    # "compute": frozen/full weights stored in the compute dtype (memory-lean, pure bf16 full fine-tune);
    # "fp32": classic AMP with fp32 master weights (more memory, residual stream fp32).
    weights: Literal["compute", "fp32"] = "compute"

    @property
    def autocast_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    def describe(self) -> str:
        scaler = " with dynamic loss scaling" if self.dtype == "fp16" else ""
        where = "weights and residual stream" if self.weights == "compute" else "autocast over fp32 master weights"
        return f"{self.dtype} compute ({where}){scaler}"

    def spec_item(self) -> str:
        return self.dtype if self.weights == "compute" else f"{self.dtype}:weights=fp32"

    def check_launch(self, stack, launch) -> list[str]:
        if self.weights == "compute":  # frozen weights in bf16/fp16 beside fp32 adapters
            refuse_fsdp1_mixed_dtypes(stack, launch)
        return []

    def check(self, stack) -> None:
        if self.dtype == "fp16" and self.weights == "compute" and not stack.trains_adapters_only:
            raise StackError("fp16 full fine-tuning with fp16 weights cannot be loss-scaled (the scaler needs fp32 "
                             "master weights): use 'bf16', 'fp16:weights=fp32', or add 'lora'")

    def model_kwargs(self, ctx):
        return {"dtype": self.autocast_dtype if self.weights == "compute" else torch.float32}

    def accelerator_kwargs(self, ctx):
        return {"mixed_precision": self.dtype}

    def estimate_memory(self, est, ctx):
        est.set_compute_dtype(self.autocast_dtype, weights_in_compute=self.weights == "compute")

