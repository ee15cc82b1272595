"""What the bitsandbytes weight quantizations (quant4bit, quant8bit, and the 4-bit fast path) share: the checks that
they train through adapters, the compute dtype they resolve, and the freezing that keeps float params in one dtype.

Private (underscore): not a strategy, registers nothing; it exists so no strategy file imports another's helpers.
"""

from __future__ import annotations

from typing import Optional

import torch

from ..core.protocol import DTYPE_NAMES, DTYPES, StackError, bitsandbytes_available


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
