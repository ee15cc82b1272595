"""Throughput and memory readings shared by the loop, the planner and the benchmarks."""

from __future__ import annotations

import resource
import time

import torch

from ..core.units import GiB


def reset_peak(device: torch.device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def memory_stats(device: torch.device) -> dict[str, float]:
    """Peak/current allocator bytes on CUDA; on CPU the process's peak resident set (an upper bound)."""
    device = torch.device(device)
    if device.type == "cuda":
        return {"device": torch.cuda.get_device_name(device),
                "peak_gib": torch.cuda.max_memory_allocated(device) / GiB,
                "peak_reserved_gib": torch.cuda.max_memory_reserved(device) / GiB,
                "allocated_gib": torch.cuda.memory_allocated(device) / GiB,
                "total_gib": torch.cuda.get_device_properties(device).total_memory / GiB}
    return {"device": "cpu", "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GiB}


class Meter:
    """Tokens per second: the last interval and the mean over everything after the first (warm-up) update."""

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.tokens_after_first = 0
        self.first_end: float | None = None

    def update(self, tokens: int) -> float:
        now = time.perf_counter()
        rate = tokens / max(now - self.last, 1e-9)
        if self.first_end is None:
            self.first_end = now
        else:
            self.tokens_after_first += tokens
        self.last = now
        return rate

    @property
    def seconds(self) -> float:
        return self.last - self.start

    @property
    def mean_rate(self) -> float:
        if self.first_end is None or self.last <= self.first_end:
            return 0.0
        return self.tokens_after_first / (self.last - self.first_end)
