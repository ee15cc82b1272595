"""The plan cache file: written by the planner, lowered by the training loop's OOM back-off."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.files import atomic_write_json


def write_plan_cache(path: Path, data: dict[str, Any]) -> None:
    """Temp file + rename: other ranks and later runs read this file, and the loop's OOM back-off rewrites it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, data)
