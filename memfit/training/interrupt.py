"""SIGINT/SIGTERM during training: finish the current step, save a checkpoint, stop with one line on how to resume.

A signal in the middle of a step (Ctrl-C, a scheduler's SIGTERM before it kills the job) used to raise wherever the
step happened to be, leaving nothing newer than the last periodic checkpoint. Inside `StopOnSignal` the first signal
only sets a flag; the loop checks it after each optimizer step (all ranks together), saves, and raises
`TrainingInterrupted`, which the CLI turns into its line and exit code. A second signal means "now": the previous
handlers are back and it acts as it would have without memfit. Handlers are installed for the block only, and only
from the main thread (Python allows no other).
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Optional

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(Exception):
    """Training stopped on a signal after a complete step; `checkpoint` is where that step was saved (None: no
    output_dir). `exit_code` follows the shell convention 128 + signal number (130 for SIGINT, 143 for SIGTERM)."""

    def __init__(self, signum: int, step: int, checkpoint: Optional[Path]):
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        self.exit_code = 128 + int(signum)
        name = signal.Signals(signum).name
        if checkpoint is not None:  # the step's own, or the last good one when this step's update was skipped
            saved = int(Path(checkpoint).name.split("-")[-1])
            how = (f"the latest checkpoint is {checkpoint}; run the same command again (resume 'auto') to continue "
                   f"from step {saved}")
        else:
            how = "nothing was saved (no output_dir): rerun with an output_dir to be able to resume"
        super().__init__(f"training stopped by {name} after step {step}: {how}")


class StopOnSignal:
    """`with StopOnSignal() as stop:` ... `stop.signum` is the first SIGINT/SIGTERM received inside, or None."""

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "StopOnSignal":
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:  # the second signal: restore and let it act at once
            self._restore()
            previous = signal.getsignal(signum)
            if callable(previous):
                previous(signum, frame)
            else:
                signal.raise_signal(signum)
            return
        self.signum = signum

    def _restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def __exit__(self, *exc) -> None:
        self._restore()

    def requested(self, acc) -> Optional[int]:
        """The signal to stop for, agreed on by every rank (one rank's signal stops all, after the same step)."""
        if acc.num_processes == 1:
            return self.signum
        import torch

        flag = torch.tensor(float(self.signum or 0), device=acc.device)
        agreed = int(acc.reduce(flag, reduction="max").item())
        return agreed or None
