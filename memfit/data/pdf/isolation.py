"""Run a function on each input in its own short-lived process, with a time limit per input.

A crafted PDF can make pypdf loop for minutes or eat memory; in a child process it can be killed without losing
the other files. Processes are forked where the platform allows (no re-import, ~ms to start); each result comes back
through a pipe, and a child that dies without answering (segfault, OOM kill) is reported with its exit code.

The limit is on the child's *CPU time* where the platform shows it (Linux /proc): a file's cost, not how busy the
machine is. A wall-clock limit made genuine files time out whenever other jobs saturated the cores (the fuzz run lost
intact control PDFs that way). A wall-clock backstop (`WALL_FACTOR` x the limit) still stops a child that hangs
without using CPU; one stopped by it while sharing the machine with its siblings is retried once alone, so one slow
file never costs another.
"""
from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

WALL_FACTOR = 10.0  # wall-clock backstop, in multiples of the CPU-time limit: a loaded shared machine gives
# one process a tenth of a core or less (a factor of 3 still stopped genuine files at load 8 on 2 cores)
PR_SET_PDEATHSIG = 1  # linux/prctl.h
POLL_S = 0.2  # how often the children's CPU time is read
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass
class Outcome:
    value: Any = None
    error: BaseException | None = None
    timed_out: bool = False
    exitcode: int | None = None  # set when the child died without sending a result
    seconds: float = 0.0  # wall-clock, summed over a retry
    cpu_seconds: float | None = None  # None where the platform does not show a child's CPU time
    wall_limited: bool = False  # stopped by the wall-clock backstop (it hung), not by its CPU time

    @property
    def ok(self) -> bool:
        return self.error is None and not self.timed_out and self.exitcode is None


def die_with_parent(parent_pid: int) -> None:
    """Linux: ask the kernel to SIGKILL this process when its parent dies (a killed run must not leave extraction
    workers of hundreds of MB behind), and exit at once if the parent is already gone. Elsewhere the parent's
    `finally` is the only cleanup."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux, or no prctl
        return
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)


def _child(conn: Any, func: Callable[[Any], Any], arg: Any, parent_pid: int) -> None:
    die_with_parent(parent_pid)
    try:
        message: tuple[bool, Any] = (True, func(arg))
    except Exception as exc:  # noqa: BLE001 - every failure is reported to the parent
        message = (False, exc)
    try:
        conn.send(message)
    except Exception as exc:  # noqa: BLE001 - an unpicklable exception still gets a message across
        conn.send((False, RuntimeError(f"{type(message[1]).__name__}: {message[1]} ({exc})")))
    finally:
        conn.close()


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a live process, from /proc; None where there is no /proc (macOS, Windows)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return None
    fields = stat.rsplit(b")", 1)[1].split()  # the command name may contain spaces; fields 14-15 are utime, stime
    return (int(fields[11]) + int(fields[12])) / _TICKS


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def _context() -> Any:
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


@dataclass
class _Running:
    index: int
    process: Any
    start: float
    cpu: float | None = None

    def limit_hit(self, timeout_s: float, now: float) -> str | None:
        self.cpu = cpu_seconds(self.process.pid) if self.process.pid else None
        if self.cpu is None:  # no CPU clock to read: the wall clock is the limit
            return "wall" if now - self.start >= timeout_s else None
        if self.cpu >= timeout_s:
            return "cpu"
        return "wall" if now - self.start >= timeout_s * WALL_FACTOR else None


def _run_pass(func: Callable[[Any], Any], args: Sequence[Any], indices: list[int], results: list[Outcome | None],
              timeout_s: float, workers: int) -> None:
    ctx = _context()
    pending = list(indices)
    running: dict[Any, _Running] = {}  # result pipe -> the child answering on it
    try:
        while pending or running:
            while pending and len(running) < workers:
                index = pending.pop(0)
                receiver, sender = ctx.Pipe(duplex=False)
                process = ctx.Process(target=_child, args=(sender, func, args[index], os.getpid()), daemon=True)
                process.start()
                sender.close()
                running[receiver] = _Running(index, process, time.monotonic())
            for conn in multiprocessing.connection.wait(list(running), timeout=POLL_S):
                child = running.pop(conn)
                try:
                    ok, payload = conn.recv()
                    results[child.index] = Outcome(value=payload) if ok else Outcome(error=payload)
                except EOFError:
                    child.process.join()
                    results[child.index] = Outcome(exitcode=child.process.exitcode)
                conn.close()
                child.process.join()
                results[child.index].seconds = time.monotonic() - child.start
                results[child.index].cpu_seconds = child.cpu
            now = time.monotonic()
            for conn, child in list(running.items()):
                hit = child.limit_hit(timeout_s, now)
                if hit is not None:
                    child.process.kill()
                    child.process.join()
                    conn.close()
                    del running[conn]
                    results[child.index] = Outcome(timed_out=True, seconds=now - child.start,
                                                   cpu_seconds=child.cpu, wall_limited=hit == "wall")
    finally:
        for conn, child in running.items():
            child.process.kill()
            child.process.join()
            conn.close()


def run_isolated(func: Callable[[Any], Any], args: Sequence[Any], *, timeout_s: float,
                 workers: int | None = None) -> list[Outcome]:
    """`[func(arg) for arg in args]`, each in a child process, at most `workers` at a time."""
    workers = max(1, workers or default_workers())
    results: list[Outcome | None] = [None] * len(args)
    _run_pass(func, args, list(range(len(args))), results, timeout_s, workers)
    if workers > 1 and len(args) > 1:  # a child starved while sharing the cores gets one more chance, alone
        retry = [i for i, outcome in enumerate(results) if outcome is not None and outcome.wall_limited]
        first_tries = {i: results[i].seconds for i in retry}
        _run_pass(func, args, retry, results, timeout_s, 1)
        for i, seconds in first_tries.items():
            results[i].seconds += seconds
    return [result or Outcome(exitcode=-1) for result in results]
