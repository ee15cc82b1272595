"""Telling a real out-of-memory failure from any other error: the planner's probes and the loop's back-off both
turn an OOM into a smaller micro-batch, and must let every other error through."""

from __future__ import annotations

import torch

OOM = (torch.OutOfMemoryError,)


def oom_summary(exc: BaseException) -> str:
    """The first line of an OOM message (CUDA's goes on for lines about the allocator)."""
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, OOM):
        return True
    # bitsandbytes / cuBLAS sometimes surface allocation failures as RuntimeError
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
