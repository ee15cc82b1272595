"""Freed host memory goes back to the OS, so a CPU run's resident set is what is alive."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from memfit.core.host_memory import _glibc, release_freed_host_memory

STATUS = Path("/proc/self/status")


def resident_mib() -> float:
    return int(re.search(r"VmRSS:\s+(\d+)", STATUS.read_text()).group(1)) / 1024


@pytest.mark.skipif(not STATUS.exists() or _glibc() is None, reason="needs Linux with glibc")
def test_freed_small_tensors_leave_the_resident_set():
    # 64 KiB tensors sit in glibc's heap (below its mmap threshold); the last one pins the heap's top, so glibc's own
    # automatic trimming cannot return the freed ones
    tensors = [torch.ones(16 * 1024) for _ in range(3000)]  # ~190 MiB
    keep = tensors[-1]
    before = resident_mib()
    del tensors
    release_freed_host_memory()
    assert resident_mib() < before - 100
    assert float(keep.sum()) == 16 * 1024  # live memory is untouched


def test_without_glibc_it_does_nothing(monkeypatch):
    _glibc.cache_clear()
    monkeypatch.setattr("ctypes.CDLL", lambda name: (_ for _ in ()).throw(OSError(name)))
    try:
        release_freed_host_memory()  # no error, no effect
        assert _glibc() is None
    finally:
        monkeypatch.undo()
        _glibc.cache_clear()
