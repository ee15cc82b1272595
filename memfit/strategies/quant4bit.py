"""4-bit (NF4/FP4) frozen base weights through bitsandbytes, QLoRA style.

Unlike peft's `prepare_model_for_kbit_training`, norms and embeddings are *not* upcast to fp32: they stay in
the compute dtype so the residual stream does too (an fp32 stream doubles activation memory).
`upcast_norms=True` restores the HF behaviour for comparison. The layers compute through bnb's `matmul_4bit` under
peft's LoRA; `quant4bit_fused` (q4fused) computes the same layers through memfit's fused op instead.
"""

from __future__ import annotations

from typing import ClassVar, Literal, Optional

import torch
from pydantic import BaseModel

from ..core.launch import refuse_fsdp1_mixed_dtypes
from ..core.protocol import LOSSY_WEIGHTS_4BIT, DTYPE_NAMES, DTYPES, PHASE_LOAD, StackError, strategy_config
from ..core.registry import register_strategy
from ._bnb import freeze_in_compute_dtype, require_adapters, resolve_compute_dtype


@register_strategy(aliases=("q4", "qlora"))
class Quant4bit(BaseModel):
    model_config = strategy_config()
    name: ClassVar[str] = "quant4bit"
    phase: ClassVar[int] = PHASE_LOAD
    lossiness: ClassVar[int] = LOSSY_WEIGHTS_4BIT
    quality_note: ClassVar[str] = "NF4 base weights (SmolLM2-135M: about +29 % perplexity)"
    speed_cost: ClassVar[float] = 1.3  # dequantise every weight on every forward and backward
    requires: ClassVar[frozenset[str]] = frozenset({"bitsandbytes"})

    quant_type: Literal["nf4", "fp4"] = "nf4"
    double_quant: bool = True
    compute_dtype: Optional[Literal["bf16", "fp16", "fp32"]] = None  # default: the stack's autocast dtype
    # Storage dtype of the packed weights. ZeRO-3/FSDP shard only float tensors: set it to the compute dtype there.
    quant_storage: Literal["uint8", "bf16", "fp16", "fp32"] = "uint8"
    upcast_norms: bool = False

    def describe(self) -> str:
        return (f"{self.quant_type.upper()} 4-bit base weights{' + double quant' if self.double_quant else ''}, "
                f"compute in the stack dtype, storage {self.quant_storage}")

    def check_launch(self, stack, launch) -> list[str]:
        """Sharded engines need the packed weights stored in the compute dtype (ZeRO-3 without zero.Init copes)."""
        if launch.sharded_weights and self.quant_storage != self._compute_name(stack):
            return self._sharded_storage(launch, self._compute_name(stack))
        refuse_fsdp1_mixed_dtypes(stack, launch)
        return []

    def _compute_name(self, stack) -> str:
        return self.compute_dtype or DTYPE_NAMES[stack.compute_dtype]

    def _sharded_storage(self, launch, compute: str) -> list[str]:
        engine = "ZeRO-3" if launch.distributed_type == "DEEPSPEED" else f"FSDP{launch.fsdp_version or ''}"
        fix = (f"use 'quant4bit:quant_storage={compute}' (the stack computes in {compute}), e.g. "
               f"'lora+quant4bit:quant_storage=bf16+bf16+gc'")
        if launch.distributed_type == "FSDP":
            why = ("FSDP1 flattens each wrapped layer into one buffer of a single dtype and refuses the mix; FSDP2 "
                   "(accelerate 1.15) leaves non-float Params4bit out of sharding, so every GPU keeps all 4-bit weights")
            raise StackError(f"quant4bit stores its packed weights as {self.quant_storage} under {engine}: {why}. {fix}")
        if launch.zero3_init:  # the documented QLoRA + zero.Init loading path: packed weights in the model dtype
            raise StackError(f"quant4bit stores its packed weights as {self.quant_storage} while the model loads "
                             f"inside deepspeed.zero.Init (ZeRO-3), which expects them in the model's dtype: {fix}")
        # Loaded before ZeRO-3 partitions it, DeepSpeed 0.19.8 shards uint8 weights too (its all-gathers go by dtype;
        # seen on CPU/gloo), so only a note: the documented recipe stores them in the compute dtype.
        return [f"quant4bit under ZeRO-3 with {self.quant_storage} storage: sharded, but the documented QLoRA + "
                f"ZeRO-3 setup stores 4-bit weights in the compute dtype; consider {fix}"]

    def check(self, stack) -> None:
        require_adapters(stack, "quant4bit")
        if "quant8bit" in stack:
            raise StackError("quant4bit and quant8bit both quantize the base weights: keep one")
        resolve_compute_dtype(self.compute_dtype, stack, "quant4bit")

    def model_kwargs(self, ctx):
        from transformers import BitsAndBytesConfig

        dtype = resolve_compute_dtype(self.compute_dtype, ctx.stack, "quant4bit")
        storage = torch.uint8 if self.quant_storage == "uint8" else DTYPES[self.quant_storage]
        cfg = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=self.quant_type,
                                 bnb_4bit_use_double_quant=self.double_quant, bnb_4bit_compute_dtype=dtype,
                                 bnb_4bit_quant_storage=storage)
        return {"quantization_config": cfg, "dtype": dtype}

    def transform_model(self, model, ctx):
        freeze_in_compute_dtype(model, resolve_compute_dtype(self.compute_dtype, ctx.stack, "quant4bit"),
                                self.upcast_norms)
        return model

    def estimate_memory(self, est, ctx):
        # 4 bits per weight + one absmax per 64 weights (fp32, or 8-bit + fp32 per 256 blocks with double quant)
        absmax_bits = (8 / 64 + 32 / (64 * 256)) if self.double_quant else 32 / 64
        est.set_linear_weight_bits(4 + absmax_bits)
