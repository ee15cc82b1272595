"""The one way memfit writes a file: a temporary sibling, fsync'ed, then `os.replace`d over the target.

A reader (or a resumed run) therefore sees either the old file or the complete new one, never a truncated one - a
full disk or a kill mid-write leaves the previous version. The temporary name carries the pid and a random suffix so
that two processes writing the same target never share a temporary file.
"""
from __future__ import annotations

import json
import math
import os
import secrets
from pathlib import Path
from typing import Any


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some filesystems do not open directories; the rename itself is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` atomically; on any error the target is untouched and no temporary file is left."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    return atomic_write_bytes(path, text.encode(encoding))


def finite_or_none(value: Any) -> Any:
    """`value` with every NaN/inf float replaced by None (recursively): strict JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    return value


def atomic_write_json(path: str | Path, data: Any, *, indent: int | None = 2, **dumps_kwargs: Any) -> Path:
    """Strict JSON (non-finite floats become null, so the file always parses), written atomically."""
    text = json.dumps(finite_or_none(data), indent=indent, allow_nan=False, **dumps_kwargs)
    return atomic_write_text(path, text)
