"""A run's checkpoint folders on disk: their names, the state file, listing them, and what is wrong with one.

Only final names (`step-00000012`) are checkpoints; `.tmp-` (a save in progress) and `.trash-` (a deletion in
progress) folders are leftovers of killed runs, removed by the next run. A final-named folder is complete when it is
written, and its manifest (memfit.core.integrity) tells whether it still is.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..core.integrity import MANIFEST, manifest_problem

STATE_FILE = "trainer_state.json"
_NAME = re.compile(r"^step-(\d+)$")


@dataclass
class TrainState:
    """Everything besides accelerate's state that a resumed run needs to continue exactly."""

    step: int = 0
    epoch: int = 0
    consumed: int = 0  # loader batches of `epoch` already used
    micro_batch: int = 0  # current size (smaller than the loader batch after an OOM back-off)
    tokens: int = 0
    losses: list[float] = field(default_factory=list)
    skipped_steps: int = 0
    nonfinite_steps: int = 0
    evals: list[dict[str, Any]] = field(default_factory=list)
    backoffs: list[dict[str, Any]] = field(default_factory=list)
    fingerprint: dict[str, Any] = field(default_factory=dict)


def discard(folder: Path) -> None:
    """Rename first (atomic), then delete: a kill mid-delete never leaves a damaged folder under a checkpoint name."""
    trash = folder.with_name(f".trash-{folder.name}")
    shutil.rmtree(trash, ignore_errors=True)
    os.rename(folder, trash)
    shutil.rmtree(trash, ignore_errors=True)


def read_state(folder: Path) -> Optional[TrainState]:
    """The checkpoint's state, or None if the folder is not a complete checkpoint."""
    try:
        data = json.loads((folder / STATE_FILE).read_text())
        return TrainState(**{k: v for k, v in data.items() if k in TrainState.__dataclass_fields__})
    except (OSError, ValueError, TypeError):
        return None


def checkpoint_folders(root: Path) -> list[Path]:
    """Folders under a checkpoint name, oldest first, whatever their state (temporary and half-deleted ones never)."""
    found = [p for p in root.iterdir() if _NAME.match(p.name) and p.is_dir()] if root.is_dir() else []
    return sorted(found, key=lambda p: int(_NAME.match(p.name)[1]))


def list_checkpoints(root: str | Path) -> list[Path]:
    """Complete checkpoints under `root` (a readable state file), oldest first."""
    return [p for p in checkpoint_folders(Path(root)) if read_state(p) is not None]


def checkpoint_problem(folder: Path) -> Optional[str]:
    """Why `folder` cannot be resumed from, naming the file; None when its files match their checksums (or, for a
    checkpoint of a memfit without checksums, when its state and weights can be read)."""
    sealed = (folder / MANIFEST).exists()
    if sealed and (problem := manifest_problem(folder)):
        return problem
    if read_state(folder) is None:
        return f"{STATE_FILE} is missing or unreadable"
    if not sealed:
        from safetensors import safe_open

        try:
            with safe_open(str(folder / "model.safetensors"), "pt") as f:
                list(f.keys())
        except Exception as exc:  # noqa: BLE001 - SafetensorError is no OSError
            return f"model.safetensors cannot be read ({type(exc).__name__})"
    return None


