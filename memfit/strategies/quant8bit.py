"""8-bit (LLM.int8) frozen base weights through bitsandbytes; trained through LoRA adapters."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel

from ..core.launch import refuse_fsdp1_mixed_dtypes
from ..core.protocol import LOSSY_WEIGHTS_8BIT, PHASE_LOAD, StackError, strategy_config
from ..core.registry import register_strategy
from ._bnb import freeze_in_compute_dtype, require_adapters


@register_strategy(aliases=("q8",))
class Quant8bit(BaseModel):
    model_config = strategy_config()
    name: ClassVar[str] = "quant8bit"
    phase: ClassVar[int] = PHASE_LOAD
    lossiness: ClassVar[int] = LOSSY_WEIGHTS_8BIT
    quality_note: ClassVar[str] = "LLM.int8 base weights (smaller loss than 4-bit)"
    speed_cost: ClassVar[float] = 1.5  # int8 matmuls with outlier decomposition
    requires: ClassVar[frozenset[str]] = frozenset({"bitsandbytes"})

    threshold: float = 6.0  # LLM.int8 outlier threshold: columns above it stay in 16-bit

    def describe(self) -> str:
        return f"LLM.int8 8-bit base weights (outlier threshold {self.threshold:g})"

    def check_launch(self, stack, launch) -> list[str]:
        if launch.sharded_weights:
            engine = "ZeRO-3" if launch.distributed_type == "DEEPSPEED" else f"FSDP{launch.fsdp_version or ''}"
            raise StackError(f"quant8bit under {engine}: LLM.int8 weights (int8 tensors with row scales kept beside "
                             f"them) cannot be sharded. Use 'quant4bit:quant_storage=<compute dtype>' instead, or "
                             f"launch with DDP / ZeRO-2 (launch_configs/ddp.yaml, deepspeed_zero2.yaml)")
        refuse_fsdp1_mixed_dtypes(stack, launch)
        return []

    def check(self, stack) -> None:
        require_adapters(stack, "quant8bit")
        if "quant4bit" in stack:
            raise StackError("quant8bit and quant4bit both quantize the base weights: keep one")

    def model_kwargs(self, ctx):
        from transformers import BitsAndBytesConfig

        return {"quantization_config": BitsAndBytesConfig(load_in_8bit=True, llm_int8_threshold=self.threshold),
                "dtype": ctx.compute_dtype}

    def transform_model(self, model, ctx):
        freeze_in_compute_dtype(model, ctx.compute_dtype, upcast_norms=False)
        return model

    def estimate_memory(self, est, ctx):
        est.set_linear_weight_bits(8 + 32 / 4096)  # int8 weights + one fp32 scale per output row (approx.)
