"""4-bit (NF4/FP4) frozen base weights through bitsandbytes, QLoRA style.

Unlike peft's `prepare_model_for_kbit_training`, norms and embeddings are *not* upcast to fp32: they stay in
the compute dtype so the residual stream does too (an fp32 stream doubles activation memory).
`upcast_norms=True` restores the HF behaviour for comparison.
"""

from __future__ import annotations

from typing import ClassVar, Literal, Optional

import torch
from pydantic import BaseModel

from ..core.protocol import DTYPES, DTYPE_NAMES, LOSSY_WEIGHTS_4BIT, PHASE_LOAD, StackError, bitsandbytes_available, strategy_config
from ..core.registry import register_strategy


def require_adapters(stack, who: str) -> None:
    if not stack.trains_adapters_only:
        raise StackError(f"{who} without LoRA: quantized weights are frozen and cannot be trained. "
                         f"Add 'lora' to the stack (e.g. 'lora+{who}+bf16').")
    if not bitsandbytes_available():
        raise StackError(f"{who} needs bitsandbytes, which is not installed: pip install 'memfit[gpu]'")


def resolve_compute_dtype(explicit: Optional[str], stack, who: str) -> torch.dtype:
    autocast = stack.compute_dtype
    if explicit is None:
        return autocast
    if "mixed_precision" in stack and DTYPES[explicit] != autocast:
        raise StackError(f"{who} computes in {explicit} but autocast is {DTYPE_NAMES[autocast]}: mixing them "
                         f"promotes the residual stream to fp32. Use one dtype (drop compute_dtype, or set both to "
                         f"{explicit}).")
    return DTYPES[explicit]


def freeze_in_compute_dtype(model, dtype: torch.dtype, upcast_norms: bool) -> None:
    """Freeze everything (LoRA adds the trainable parts later) and keep float params in one dtype."""
    target = torch.float32 if upcast_norms else dtype
    for p in model.parameters():
        p.requires_grad_(False)
        if p.dtype in (torch.float16, torch.bfloat16, torch.float32) and p.__class__.__name__ == "Parameter":
            p.data = p.data.to(target)


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
