"""Content checksums: what a file or folder holds, not what it is called or how large it is.

Three forms, one hash (sha256: with the CPU's SHA extensions it is the fastest in hashlib, ~0.8-2 GB/s per core):
- `folder_fingerprint(folder)`: one digest over a folder's weight files (a base model), for recording in a run and
  comparing later. `DigestMemo` caches each file's digest by its identity (size, mtime_ns, ctime_ns, inode) in a
  small JSON sidecar, so verifying an unchanged 16 GB model costs a few stat calls, not 10 s of hashing. ctime is in
  the identity because no program can set it: an edit with the mtime put back still changes it.
- a checksum manifest (`write_manifest(folder)` / `verify_manifest(folder)`): sha256 per file, written last and
  atomically next to the files it covers (adapters, checkpoints, converted-model caches). A manifest that exists
  therefore means every file was complete when it was written.
- an embedded checksum (`with_checksum(data)` / `checksum_problem(data)`): for one JSON document (a plan cache entry,
  results.json), the sha256 of its canonical form stored under the key "checksum".
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Optional

from .files import atomic_write_json, finite_or_none

MANIFEST = "memfit_checksums.json"
FINGERPRINT_MEMO = "file_digests.json"  # the DigestMemo sidecar's name under $MEMFIT_CACHE
CHECKSUM_KEY = "checksum"
_CHUNK = 8 << 20  # 8 MiB reads: large enough that the hash, not the syscalls, sets the speed


class IntegrityError(ValueError):
    """Content that does not match its recorded checksum; the message names the file and what to do."""


def file_sha256(path: str | Path) -> str:
    digest, buffer = hashlib.sha256(), bytearray(_CHUNK)
    view = memoryview(buffer)
    with open(path, "rb") as handle:
        while n := handle.readinto(buffer):
            digest.update(view[:n])
    return digest.hexdigest()


def _identity(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


class DigestMemo:
    """{resolved path: (identity, sha256)} in a JSON sidecar. A file whose identity is unchanged is not hashed again.
    The sidecar is only a cache: unreadable, it is started afresh; two processes updating it at once lose at most
    the other's new entries (rehashed next time)."""

    def __init__(self, path: Optional[str | Path]):
        self.path = Path(path) if path else None
        self.entries: dict[str, Any] = {}
        self.changed = False
        if self.path is not None:
            try:
                loaded = json.loads(self.path.read_text())
                self.entries = loaded if isinstance(loaded, dict) else {}
            except (OSError, ValueError):
                self.entries = {}

    def digest(self, path: str | Path) -> str:
        path = Path(path).resolve()
        ident, known = _identity(path), self.entries.get(str(path))
        if isinstance(known, dict) and known.get("identity") == ident and isinstance(known.get("sha256"), str):
            return known["sha256"]
        value = file_sha256(path)
        if _identity(path) == ident:  # not remembered if the file changed while it was read
            self.entries[str(path)] = {"identity": ident, "sha256": value}
            self.changed = True
        return value

    def save(self) -> None:
        if self.path is None or not self.changed:
            return
        kept = {k: v for k, v in self.entries.items() if os.path.exists(k)}  # forget files that are gone
        try:
            atomic_write_json(self.path, kept, indent=None)
        except OSError:  # a read-only cache only costs the next verification its speed
            pass
        self.changed = False


def folder_fingerprint(folder: str | Path, patterns: Iterable[str] = ("*.safetensors", "config.json"),
                       memo: Optional[str | Path] = None) -> str:
    """"sha256:<hex>" over the names and contents of the files in `folder` matching `patterns` (not recursive)."""
    folder, cache = Path(folder), DigestMemo(memo)
    files = sorted({p for pattern in patterns for p in folder.glob(pattern) if p.is_file()})
    if not files:
        raise IntegrityError(f"{folder} holds no files matching {', '.join(patterns)}: nothing to fingerprint")
    combined = hashlib.sha256()
    for path in files:
        combined.update(f"{path.name}\0{cache.digest(path)}\n".encode())
    cache.save()
    return f"sha256:{combined.hexdigest()}"


def _covered(folder: Path) -> list[Path]:
    """Every regular file under `folder` except the manifest and hidden temporaries."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def write_manifest(folder: str | Path, memo: Optional[str | Path] = None) -> Path:
    """Record the sha256 of every file under `folder` in `folder/memfit_checksums.json`, written atomically. Call it
    last, after every other file is written: the manifest's presence then means the folder was complete."""
    folder, cache = Path(folder), DigestMemo(memo)
    files = {p.relative_to(folder).as_posix(): cache.digest(p) for p in _covered(folder)}
    cache.save()
    return atomic_write_json(folder / MANIFEST, {"algorithm": "sha256", "files": files})


def manifest_problem(folder: str | Path, memo: Optional[str | Path] = None, *, required: bool = True) -> Optional[str]:
    """None when every file the manifest lists is present with its recorded sha256; otherwise what is wrong, naming
    the file. `required=False`: a folder without a manifest (written by an older memfit) passes."""
    folder = Path(folder)
    try:
        recorded = json.loads((folder / MANIFEST).read_text())["files"]
        if not isinstance(recorded, dict):
            raise TypeError("'files' is not a mapping")
    except FileNotFoundError:
        return f"{folder} has no checksum manifest ({MANIFEST})" if required else None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"its checksum manifest {folder / MANIFEST} is unreadable ({type(exc).__name__}: {exc})"
    cache = DigestMemo(memo)
    try:
        for name, want in sorted(recorded.items()):
            path = folder / name
            if not path.is_file():
                return f"{path} is missing"
            if cache.digest(path) != want:
                return f"{path} does not match its recorded sha256 (changed or corrupted since it was written)"
    finally:
        cache.save()
    return None


def verify_manifest(folder: str | Path, memo: Optional[str | Path] = None, *, required: bool = True,
                    fix: str = "restore it from a backup or write it again") -> None:
    """Raise IntegrityError naming the first file that is missing or differs from the manifest."""
    problem = manifest_problem(folder, memo, required=required)
    if problem:
        raise IntegrityError(f"{problem}: {fix}")


def _canonical(data: dict[str, Any]) -> bytes:
    # through one JSON round trip first: what a reader parses (int keys as strings, tuples as lists) hashes the same
    body = json.loads(json.dumps({k: v for k, v in finite_or_none(data).items() if k != CHECKSUM_KEY}, default=str))
    return json.dumps(body, sort_keys=True, allow_nan=False, separators=(",", ":")).encode()


def with_checksum(data: dict[str, Any]) -> dict[str, Any]:
    """`data` plus its own sha256 under "checksum" (computed over the JSON that will be written: NaN as null)."""
    return {**data, CHECKSUM_KEY: hashlib.sha256(_canonical(data)).hexdigest()}


def checksum_problem(data: Any, *, required: bool = True) -> Optional[str]:
    """None when `data` (a parsed JSON document) carries a matching "checksum"; otherwise why not."""
    if not isinstance(data, dict):
        return f"it holds a {type(data).__name__}, not a JSON object"
    if CHECKSUM_KEY not in data:
        return "it carries no checksum (written by an older memfit or by hand)" if required else None
    if data[CHECKSUM_KEY] != hashlib.sha256(_canonical(data)).hexdigest():
        return "its content does not match its checksum (edited or corrupted after it was written)"
    return None
