"""The one way memfit writes a file or a folder: a temporary sibling, fsync'ed, then renamed over the target.

A reader (or a resumed run) therefore sees either the old file or the complete new one, never a truncated one - a
full disk or a kill mid-write leaves the previous version. The temporary name carries the pid and a random suffix so
that two processes writing the same target never share a temporary file; `atomic_directory` removes the leftovers of
writers that were killed (their pid is gone), so a crashed conversion never breaks or litters the next one.
"""
from __future__ import annotations

import errno
import json
import math
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def fsync_dir(directory: Path) -> None:
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


def fsync_tree(folder: Path) -> None:
    """Flush every file under `folder`, then the folders, so a rename publishes data that is on disk."""
    for entry in sorted(folder.rglob("*")):
        if entry.is_file():
            with open(entry, "rb") as handle:
                os.fsync(handle.fileno())
        else:
            fsync_dir(entry)
    fsync_dir(folder)


def _temporary_sibling(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _remove_stale_siblings(path: Path) -> None:
    """Temporary folders of `path` whose writer died (kill -9, power loss): nobody will finish or remove them."""
    _remove_stale(path.parent, re.escape(path.name))


def remove_stale_temporaries(folder: str | Path) -> None:
    """Every temporary file or folder in `folder` that memfit named (`.<target>.<pid>-<hex>.tmp`, or older merges'
    `.<target>.tmp-<pid>-<hex>`) for any target and whose writer is dead: a killed merge into another --out left one
    there, and nobody else would remove it."""
    _remove_stale(Path(folder), r".+")


def _remove_stale(folder: Path, target: str) -> None:
    # `.<target>.<pid>-<hex>.tmp|old`, and `.<target>.tmp-<pid>-<hex>`: the name merges used before atomic_directory,
    # which killed merges of older versions left behind
    pattern = re.compile(rf"^\.(?P<final>{target})\.(?:(?P<pid>\d+)-[0-9a-f]+\.(?P<kind>tmp|old)"
                         rf"|tmp-(?P<old_pid>\d+)-[0-9a-f]+)$")
    for entry in folder.iterdir() if folder.is_dir() else ():
        match = pattern.match(entry.name)
        pid = int(match["pid"] or match["old_pid"]) if match else 0
        if not match or pid == os.getpid() or _pid_alive(pid):
            continue
        final = folder / match["final"]
        if match["kind"] == "old" and not final.exists():  # killed between its two renames: the old folder is whole
            os.rename(entry, final)
        elif entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _default_modes(folder: Path) -> None:
    """Files a writer made private (transformers 5 writes model.safetensors as 0600 through a temporary file) get the
    mode open() gives under the user's umask, read from the folder mkdir() just made (0o777 & ~umask)."""
    default = folder.stat().st_mode & 0o666
    for entry in folder.rglob("*"):
        if entry.is_file() and not entry.is_symlink() and entry.stat().st_mode & 0o777 == 0o600 != default:
            entry.chmod(default)


@contextmanager
def atomic_directory(path: str | Path, *, replace: bool = True) -> Iterator[Path]:
    """`with atomic_directory(out) as tmp:` fill `tmp`; on a clean exit it is fsync'ed and renamed to `out`.

    On any error the temporary folder is removed and `out` is untouched. `replace=False` is for caches that any
    process may fill: when `out` already exists at the end (a concurrent writer won), ours is discarded and `out`
    kept. `replace=True` swaps an existing `out` aside and back only if the rename fails, so `out` is always the old
    or the new folder, whole (for at most one rename in between, no folder at all).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_siblings(path)
    tmp = _temporary_sibling(path)
    tmp.mkdir()
    try:
        yield tmp
        _default_modes(tmp)
        fsync_tree(tmp)
        if path.exists() and not replace:
            shutil.rmtree(tmp, ignore_errors=True)
            return
        old = path.with_name(tmp.name[:-len(".tmp")] + ".old") if path.exists() else None
        if old is not None:
            os.rename(path, old)
        try:
            os.rename(tmp, path)
        except OSError as exc:
            if old is not None:
                os.rename(old, path)
            elif not replace and exc.errno in (errno.EEXIST, errno.ENOTEMPTY) and path.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)  # the concurrent winner's copy stands
                return
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` atomically; on any error the target is untouched and no temporary file is left."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_sibling(path)
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
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


def check_cache_dir(path: str | Path, what: str = "cache folder") -> Path:
    """`path` as a folder memfit can create and write cache entries in, or ValueError with one line naming the
    problem (a file or device such as /dev/null in the way, no permission, a read-only filesystem). Called before any
    model is loaded or probed, so a bad `MEMFIT_CACHE` / `--plan-cache` costs nothing."""
    path = Path(path).expanduser()
    blocker = next((p for p in (path, *path.parents) if p.exists() or p.is_symlink()), None)
    if blocker is not None and not blocker.is_dir():
        kind = "a file" if blocker.is_file() else "a broken link" if not blocker.exists() else "a device or other special file"
        where = "" if blocker == path else f" ({blocker} is {kind})"
        raise ValueError(f"{what} {path} cannot be used{where or f': it is {kind}'}: point it at a folder "
                         f"(or leave it unset for the default)")
    probe = path / f".memfit-write-test-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise ValueError(f"{what} {path} is not writable ({exc.strerror or exc}): fix its permissions or point it at "
                         f"a folder you can write to") from None
    return path
