"""The plan cache file: written by the planner, lowered by the training loop's OOM back-off."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_plan_cache(path: Path, data: dict[str, Any]) -> None:
    """Temp file + rename: other ranks and later runs read this file, and the loop's OOM back-off rewrites it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)
