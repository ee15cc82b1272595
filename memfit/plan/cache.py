"""The plan cache file: written by the planner, lowered by the training loop's OOM back-off, read by both.

Each entry carries the sha256 of its own content (memfit.core.integrity.with_checksum). A truncated, corrupt,
hand-edited or checksum-less entry is never reused and never fatal: `read_plan_cache` says so in one line, removes
it, and the caller plans again (a few probes) instead of training at a micro-batch nobody measured.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Optional

from ..core.files import atomic_write_json
from ..core.integrity import CHECKSUM_KEY, checksum_problem, with_checksum

log = logging.getLogger(__name__)


def write_plan_cache(path: str | Path, data: dict[str, Any]) -> None:
    """Temp file + rename: other ranks and later runs read this file, and the loop's OOM back-off rewrites it. A cache
    that cannot be written (read-only, full) loses only the shortcut: one warning line, the measured plan stands."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, with_checksum(data))
    except OSError as exc:
        log.warning("plan cache entry %s could not be written (%s): the next plan measures again", path,
                    exc.strerror or exc)


def read_plan_cache(path: str | Path) -> Optional[dict[str, Any]]:
    """The entry at `path` without its checksum, or None when there is none or it cannot be trusted (then removed,
    with one warning line, so the next plan rebuilds it)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:  # truncated or binary garbage: JSONDecodeError / UnicodeDecodeError
        problem = f"it is unreadable ({type(exc).__name__})"
    else:
        problem = checksum_problem(data)
        if problem is None:
            return {k: v for k, v in data.items() if k != CHECKSUM_KEY}
    log.warning("plan cache entry %s is not used: %s; planning again", path, problem)
    try:
        path.unlink()
    except OSError:
        pass  # a read-only cache: the fresh plan is simply not stored
    return None
