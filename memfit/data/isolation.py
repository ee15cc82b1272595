"""Run a function on each input in its own short-lived process, with a wall-clock limit per input.

A crafted PDF can make pypdf loop for minutes or eat memory; in a child process it can be killed without losing
the other files. Processes are forked where the platform allows (no re-import, ~ms to start); each result comes back
through a pipe, and a child that dies without answering (segfault, OOM kill) is reported with its exit code.
"""
from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass
class Outcome:
    value: Any = None
    error: BaseException | None = None
    timed_out: bool = False
    exitcode: int | None = None  # set when the child died without sending a result

    @property
    def ok(self) -> bool:
        return self.error is None and not self.timed_out and self.exitcode is None


def _child(conn: Any, func: Callable[[Any], Any], arg: Any) -> None:
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


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def _context() -> Any:
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def run_isolated(func: Callable[[Any], Any], args: Sequence[Any], *, timeout_s: float,
                 workers: int | None = None) -> list[Outcome]:
    """`[func(arg) for arg in args]`, each in a child process, at most `workers` at a time."""
    ctx = _context()
    workers = max(1, workers or default_workers())
    results: list[Outcome | None] = [None] * len(args)
    pending = list(enumerate(args))
    running: dict[Any, tuple[int, Any, float]] = {}  # result pipe -> (index, process, start time)
    try:
        while pending or running:
            while pending and len(running) < workers:
                index, arg = pending.pop(0)
                receiver, sender = ctx.Pipe(duplex=False)
                process = ctx.Process(target=_child, args=(sender, func, arg), daemon=True)
                process.start()
                sender.close()
                running[receiver] = (index, process, time.monotonic())
            first_deadline = min(start for _, _, start in running.values()) + timeout_s
            ready = multiprocessing.connection.wait(list(running), timeout=max(0.0, first_deadline - time.monotonic()))
            for conn in ready:
                index, process, _ = running.pop(conn)
                try:
                    ok, payload = conn.recv()
                    results[index] = Outcome(value=payload) if ok else Outcome(error=payload)
                except EOFError:
                    process.join()
                    results[index] = Outcome(exitcode=process.exitcode)
                conn.close()
                process.join()
            for conn, (index, process, start) in list(running.items()):
                if time.monotonic() - start >= timeout_s:
                    process.kill()
                    process.join()
                    conn.close()
                    del running[conn]
                    results[index] = Outcome(timed_out=True)
    finally:
        for conn, (_, process, _) in running.items():
            process.kill()
            process.join()
            conn.close()
    return [result or Outcome(exitcode=-1) for result in results]
