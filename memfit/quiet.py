"""Third-party noise, silenced at its source for the duration of a memfit command and restored after.

Only messages that are not the user's to act on are filtered, each listed below with where it comes from; `memfit -v`
shows everything. Nothing changes at import: `quiet_third_party()` is a context manager (the CLI wraps every command
in it) that adds logger filters and warnings filters and removes them again on exit."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

# logger -> the lowest level still shown while quiet. A level *filter* on the logger, not only setLevel: DeepSpeed
# sets its logger's level when it is imported, which may happen inside the command.
LOGGER_FLOORS: dict[str, int] = {
    # "Setting accelerator to CPU. If you have GPU ..." (deepspeed/accelerator/real_accelerator.py), printed on import
    # whenever accelerate or transformers probes for DeepSpeed on a machine without CUDA
    "DeepSpeed": logging.ERROR,
    # "Failed to load CPU gemm_4bit_forward from kernels-community ..." (bitsandbytes/backends/cpu/ops.py), on import
    # by peft even when no strategy uses bitsandbytes; memfit's 4-bit CPU path does not need that kernel
    "bitsandbytes": logging.ERROR,
    # "[RANK 0] Saving current state to ...", "... Model weights saved in ...", optimizer, scheduler, sampler, RNG:
    # six INFO lines per checkpoint (accelerate/accelerator.py save_state, accelerate/checkpointing.py); memfit logs
    # one line per checkpoint itself
    "accelerate": logging.WARNING,
}
# (message regex, category) of warnings.warn calls dropped while quiet
WARNING_FILTERS: list[tuple[str, type[Warning]]] = [
    # transformers 5.x deprecates `is_gradient_checkpointing`; peft reads it on every adapter set-up (not the user's)
    (r"`is_gradient_checkpointing` is deprecated", FutureWarning),
]


class _Floor(logging.Filter):
    def __init__(self, level: int):
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= self.level


@contextlib.contextmanager
def quiet_third_party(verbose: bool = False) -> Iterator[None]:
    """Inside: the messages above are dropped (`verbose=True`: nothing is). Outside: everything as it was."""
    if verbose:
        yield
        return
    installed: list[tuple[logging.Logger, _Floor, int, int]] = []
    try:
        with warnings.catch_warnings():
            for pattern, category in WARNING_FILTERS:
                warnings.filterwarnings("ignore", message=pattern, category=category)
            for name, floor in LOGGER_FLOORS.items():
                logger, gate = logging.getLogger(name), _Floor(floor)
                before = logger.level
                logger.addFilter(gate)  # records logged on this logger itself (DeepSpeed)
                logger.setLevel(max(before, floor))  # records of its children (accelerate.accelerator, ...)
                installed.append((logger, gate, before, logger.level))
            yield
    finally:
        for logger, gate, before, ours in installed:
            logger.removeFilter(gate)
            if logger.level == ours:  # unless the library set its own level meanwhile (DeepSpeed on import)
                logger.setLevel(before)
