"""Rank agreement for the searches: every number a search path depends on is agreed on by all ranks (one path, one
answer), a size fits only where it fits on every rank."""

from __future__ import annotations

from typing import Optional

import torch


def distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def reduce_value(value: float, op: str, device) -> float:
    """All ranks must take the same search path, so every number the path depends on is agreed on."""
    if not distributed():
        return value
    dev = device if torch.distributed.get_backend() == "nccl" else "cpu"
    t = torch.tensor([float(value)], device=dev, dtype=torch.float64)
    torch.distributed.all_reduce(t, op=getattr(torch.distributed.ReduceOp, op))
    return t.item()


def agree(fits: bool, peak: Optional[float], device) -> tuple[bool, Optional[float]]:
    """A size fits only if it fits on every rank; its peak is the worst rank's."""
    fits = bool(reduce_value(1.0 if fits else 0.0, "MIN", device))
    peak = reduce_value(peak or 0.0, "MAX", device)
    return fits, (peak if fits else None)
