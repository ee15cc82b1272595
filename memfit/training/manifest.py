"""Checksums of a checkpoint folder: a manifest with the size and sha256 of every file, written last (atomically), and
verified before the folder is trusted.

A checkpoint is sealed by an atomic rename, so a kill during saving never leaves a final-named folder half-written;
the manifest covers what happens after: a file truncated or edited later (a full disk when copying the run, a hand
edit, a bad sector) is named instead of being loaded, or silently ignored as "no checkpoint" (which restarted the run
from step 0 and overwrote its results).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Optional

from ..core.files import atomic_write_json

MANIFEST = "memfit_manifest.json"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(folder: Path) -> Path:
    """Record every file under `folder` (but the manifest): {relative path: {"bytes", "sha256"}}."""
    files = {str(p.relative_to(folder)): {"bytes": p.stat().st_size, "sha256": _sha256(p)}
             for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST}
    return atomic_write_json(folder / MANIFEST, {"version": 1, "files": files}, indent=None)


def manifest_problem(folder: Path) -> Optional[str]:
    """What is wrong with `folder` against its manifest, naming the file; None when every file matches.
    A folder without a manifest (written by memfit before checksums existed) is the caller's call: "no manifest"."""
    try:
        files = json.loads((folder / MANIFEST).read_text())["files"]
    except FileNotFoundError:
        return "no manifest"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"{MANIFEST} is unreadable ({type(exc).__name__})"
    for name, want in files.items():
        path = folder / name
        try:
            size = path.stat().st_size
            if size != want["bytes"]:
                return f"{name} has {size} bytes, {want['bytes']} were written (truncated or changed)"
            if _sha256(path) != want["sha256"]:
                return f"{name} does not match its checksum (changed after it was written)"
        except OSError as exc:
            return f"{name} cannot be read ({exc.strerror or exc})"
    return None
