"""Freed host memory handed back to the operating system.

glibc keeps what a process frees in its heap for reuse, and a CPU training step frees gigabytes of activations after
every backward: the next micro-batch allocates them in a different order, cannot reuse the fragmented heap, and the
process's resident set (what the OS and the user see as the run's memory) grows a micro-batch's activations beyond
what is alive. Trimming after each backward keeps the peak at one micro-batch's. A no-op without glibc."""

from __future__ import annotations

import ctypes
import functools


@functools.cache
def _glibc():
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # macOS, musl, Windows: their allocators return memory on their own terms
        return None
    return libc if hasattr(libc, "malloc_trim") else None


def release_freed_host_memory() -> None:
    """Return the heap's free pages to the OS (glibc `malloc_trim(0)`); live memory is untouched."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
