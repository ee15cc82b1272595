"""Third-party noise, silenced at its source for the duration of a memfit command and restored after.

Only messages that are not the user's to act on are filtered (each listed below with where it comes from); `memfit -v`
shows everything. Nothing here changes the process at import: `quiet_third_party()` is a context manager that saves
and restores the warnings filters and every logger level it touches."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

# logger name -> the level it is raised to while quiet
LOGGER_LEVELS: dict[str, int] = {}
# (message regex, category) of warnings.warn calls to drop while quiet
WARNING_FILTERS: list[tuple[str, type[Warning]]] = []


@contextlib.contextmanager
def quiet_third_party(verbose: bool = False) -> Iterator[None]:
    if verbose:
        yield
        return
    saved = {name: logging.getLogger(name).level for name in LOGGER_LEVELS}
    try:
        with warnings.catch_warnings():
            for pattern, category in WARNING_FILTERS:
                warnings.filterwarnings("ignore", message=pattern, category=category)
            for name, level in LOGGER_LEVELS.items():
                logging.getLogger(name).setLevel(level)
            yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
