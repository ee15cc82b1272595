"""Integrity of the Arrow caches (records, tokens, blocks): every cache file is checked against the sha256 recorded
when it was written, and the temporary files of killed builds are removed by the next one.

datasets reuses a cache file by its name alone, so a file damaged on disk (flipped token ids) would be trained on,
and the run would record the clean data's hash over other tokens. Here a manifest `<key>.sha256.json` beside the
files lists each file's sha256; a file that is missing from it, or does not match it, is deleted and rebuilt with
one log line saying so - never reused, never fatal. The digests are memoised by file identity (size, mtime, ctime,
inode: core.integrity.DigestMemo, a `file_digests.json` beside the manifests), so a rerun over unchanged files costs
stat calls, not a hash of every cache file. A build killed mid-write leaves datasets' `tmp*` files and `*.incomplete`
folders, which datasets never removes under another key, and memfit's own `.<name>.<pid>-<hex>.tmp` files:
`build_lock` removes them when no other build holds the cache (an advisory lock that dies with its process, so a
live build's temp files are never touched).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Optional

from datasets import Dataset

from memfit.core.files import atomic_write_json, remove_stale_temporaries
from memfit.core.integrity import FINGERPRINT_MEMO, DigestMemo
from memfit.quiet import datasets_bars_off

log = logging.getLogger(__name__)
MANIFEST = ".sha256.json"


def _read_manifest(manifest: Path) -> Optional[dict[str, str]]:
    try:
        recorded = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return None
    return recorded if isinstance(recorded, dict) else None


def digest_memo(folder: Path) -> DigestMemo:
    """The digests of the files in `folder` (cache files, or a source's files) remembered by file identity."""
    return DigestMemo(folder / FINGERPRINT_MEMO)


def _problem(files: list[Path], manifest: Path) -> Optional[str]:
    recorded = _read_manifest(manifest)
    if recorded is None:
        return "no checksum was recorded for it (an interrupted build or an older memfit)"
    memo = digest_memo(manifest.parent)
    try:
        for path in files:
            if path.name not in recorded:
                return f"{path.name} has no recorded checksum"
            if memo.digest(path) != recorded[path.name]:
                return f"{path.name} does not match its recorded sha256 (changed or damaged on disk)"
        return None
    finally:
        memo.save()


def drop_if_corrupt(what: str, files: list[Path], manifest: Path, remove: Callable[[], None]) -> None:
    """Remove the cache (`remove()`) and its manifest when a file fails its checksum, saying so in one line."""
    if not files:
        manifest.unlink(missing_ok=True)
        return
    problem = _problem(files, manifest)
    if problem is not None:
        log.warning("%s cache in %s not reused: %s; rebuilding it", what, files[0].parent, problem)
        remove()
        manifest.unlink(missing_ok=True)


def record_checksums(files: list[Path], manifest: Path) -> None:
    """Record the sha256 of `files` (hashing only the ones not yet recorded)."""
    recorded = _read_manifest(manifest) or {}
    if sorted(recorded) == sorted(p.name for p in files):
        return
    memo = digest_memo(manifest.parent)  # the files just written: hashed once, then known by their identity
    atomic_write_json(manifest, {p.name: recorded.get(p.name) or memo.digest(p) for p in files})
    memo.save()


def cached_map(data: Dataset, function: Callable[..., Any], cache_dir: Optional[Path], key: str, what: str,
               **map_kwargs: Any) -> Dataset:
    """`data.map(function, batched=True)` into the verified cache file `<cache_dir>/<key>.arrow` (shards
    `<key>_NNNNN_of_NNNNN.arrow` with num_proc), or in memory when `cache_dir` is None."""
    if cache_dir is None:  # small, in memory: datasets' bar would be noise (the cached pass names its own bar)
        with datasets_bars_off():
            return data.map(function, batched=True, keep_in_memory=True, new_fingerprint=key, **map_kwargs)
    cache_dir.mkdir(parents=True, exist_ok=True)
    manifest = cache_dir / f"{key}{MANIFEST}"

    def files() -> list[Path]:
        return sorted(cache_dir.glob(f"{key}*.arrow"))

    drop_if_corrupt(what, files(), manifest, lambda: [p.unlink(missing_ok=True) for p in files()])
    out = data.map(function, batched=True, cache_file_name=str(cache_dir / f"{key}.arrow"),
                   load_from_cache_file=True, new_fingerprint=key, desc=what, **map_kwargs)
    record_checksums(files(), manifest)
    return out


def remove_interrupted_builds(cache_dir: Path) -> list[Path]:
    """datasets' `tmp*` files and `*.incomplete` folders under `cache_dir`: call only while no build runs. memfit's
    own temporaries (manifests written atomically, unpinned Hub records) go when their writer is dead. One walk of
    the tree (not one glob per pattern): its cost is the cache's entry count, once per build."""
    stale = []
    for root, dirs, files in os.walk(cache_dir):
        remove_stale_temporaries(root)
        stale += [Path(root, d) for d in dirs if d.endswith(".incomplete")]
        stale += [Path(root, f) for f in files if f.startswith("tmp")]
        dirs[:] = [d for d in dirs if not d.endswith(".incomplete")]  # removed whole below: not walked into
    for path in stale:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    if stale:
        log.info("removed %d temporary file(s) of an interrupted Arrow build from %s", len(stale), cache_dir)
    return stale


@contextlib.contextmanager
def build_lock(cache_dir: Path) -> Iterator[None]:
    """Held (shared) while this process builds in `cache_dir`. The first to hold it alone first removes what killed
    builds left; a build already running elsewhere keeps its temporary files."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks, so nothing is removed
        yield
        return
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / ".build.lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            remove_interrupted_builds(cache_dir)
        except BlockingIOError:
            pass  # another build is running: its temporary files are live
        fcntl.flock(handle, fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
