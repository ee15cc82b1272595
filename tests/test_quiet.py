"""memfit.quiet: the third-party messages that are not the user's to fix are dropped inside `quiet_third_party()`,
shown with verbose=True, and everything is as before once the block exits."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

from memfit.quiet import LOGGER_FLOORS, quiet_third_party

REPO = Path(__file__).resolve().parents[1]


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def _emit_the_noise() -> None:
    logging.getLogger("accelerate.accelerator").info("Saving current state to run/checkpoint-2")
    logging.getLogger("bitsandbytes.backends.cpu.ops").warning("Failed to load CPU gemm_4bit_forward")
    logging.getLogger("DeepSpeed").warning("Setting accelerator to CPU.")
    logging.getLogger("DeepSpeed").error("a DeepSpeed error the user must see")
    warnings.warn("`is_gradient_checkpointing` is deprecated and will be removed in v6.", FutureWarning)
    warnings.warn("a warning about the user's own settings", UserWarning)


def _heard(verbose: bool) -> list[str]:
    records = Records()
    root = logging.getLogger()
    root.addHandler(records)
    levels = {name: logging.getLogger(name).level for name in LOGGER_FLOORS}
    logging.getLogger("DeepSpeed").propagate = True
    # other tests of the same process may have raised accelerate's own logger or disabled it (its loggers are
    # process-wide): this test is about memfit's filter, so the loggers start open
    parent = logging.getLogger("accelerate")
    parent_state = parent.level, parent.disabled, logging.getLogger("accelerate.accelerator").disabled
    parent.setLevel(logging.NOTSET)
    parent.disabled = logging.getLogger("accelerate.accelerator").disabled = False
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with quiet_third_party(verbose=verbose):
                logging.getLogger("accelerate.accelerator").setLevel(logging.NOTSET)
                root_level, root.level = root.level, logging.INFO
                try:
                    _emit_the_noise()
                finally:
                    root.level = root_level
    finally:
        root.removeHandler(records)
        parent.level, parent.disabled, logging.getLogger("accelerate.accelerator").disabled = parent_state
    assert {name: logging.getLogger(name).level for name in LOGGER_FLOORS} == levels  # restored
    assert not any(f for name in LOGGER_FLOORS for f in logging.getLogger(name).filters)
    return records.messages + [str(w.message) for w in caught]


def test_quiet_drops_only_the_listed_noise_and_verbose_keeps_it():
    quiet = _heard(verbose=False)
    assert quiet == ["a DeepSpeed error the user must see", "a warning about the user's own settings"]
    assert len(_heard(verbose=True)) == 6


def test_the_real_import_time_messages_are_silenced_at_their_source():
    probe = ("from memfit.quiet import quiet_third_party\n"
             "with quiet_third_party():\n"
             "    import deepspeed.accelerator, peft, bitsandbytes\n"
             "    deepspeed.accelerator.get_accelerator()\n"
             "print('imported')\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    said = done.stdout + done.stderr
    assert "imported" in said and "Setting accelerator" not in said and "gemm_4bit_forward" not in said
