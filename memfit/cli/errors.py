"""The CLI boundary's one-line errors: which exceptions are the user's to fix (bad input, a missing or unreadable
file, a full disk, a corrupt cache, numbers out of range) and which are memfit's bugs (a traceback, always).

The decision, deliberately:
  user's  every exception class defined in memfit (or deriving from memfit.core.errors.MemfitError); OSError (missing,
          unreadable, full disk, symlink loop, a folder where a file belongs); MemoryError and out-of-memory
          RuntimeErrors; OverflowError; ValueError unless raised inside torch/numpy numerics (pydantic, JSON, PyYAML,
          Arrow and transformers' bad-id errors are ValueErrors); errors of PyYAML, safetensors (a truncated file) and
          datasets; a RuntimeError raised by memfit's own code (it says the fix).
  bug     everything else (TypeError, AttributeError, KeyError, a RuntimeError from inside torch, ...).
Nothing here imports the modules that define the errors: classes are recognised by their module name."""

from __future__ import annotations

import errno
import json
import os
import traceback
from pathlib import Path

MEMFIT_ROOT = str(Path(__file__).resolve().parents[1])
NUMERIC_LIBRARIES = ("torch", "numpy")  # a ValueError raised in here is a shape/dtype bug, not the user's value
FILE_FORMAT_LIBRARIES = {"yaml": "a YAML file memfit could not parse: fix the line it names",
                         "safetensors": "a truncated or corrupt weights file: delete it (a cache is rebuilt, a run's "
                                        "adapter comes back only by training again)",
                         "datasets": "the data could not be read as a dataset: check the file it names"}
OS_FIXES = {errno.ENOENT: "check the path", errno.EACCES: "check its permissions or choose another path",
            errno.EPERM: "check its permissions or choose another path",
            errno.EISDIR: "a folder stands where a file belongs: pass a file",
            errno.ENOTDIR: "a file stands where a folder belongs: pass a folder",
            errno.ENOSPC: "free disk space or point the output folder / MEMFIT_CACHE at a larger disk",
            errno.EEXIST: "choose a new path or remove the old one", errno.ELOOP: "a symlink loop: fix or remove the link",
            errno.EROFS: "a read-only file system: choose a writable folder (output_dir, MEMFIT_CACHE)",
            errno.ENAMETOOLONG: "choose a shorter path"}


def _module(exc: BaseException) -> str:
    return type(exc).__module__ or ""


def _raised_in(exc: BaseException) -> str:
    """The file of the innermost Python frame that raised it ('' when unknown)."""
    frames = traceback.extract_tb(exc.__traceback__)
    return frames[-1].filename if frames else ""


def _in_package(filename: str, packages: tuple[str, ...]) -> bool:
    parts = Path(filename).parts
    return any(p in parts for p in packages)


def _defined_by_memfit(exc: BaseException) -> bool:
    return _module(exc).split(".")[0] == "memfit" or any(
        c.__name__ == "MemfitError" and c.__module__ == "memfit.core.errors" for c in type(exc).__mro__)


def one_line(text: str) -> str:
    """Multi-line messages (pydantic lists each bad field on its own line) joined into one."""
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip()) or type(text).__name__


def _os_error(exc: OSError) -> str:
    if exc.strerror is None or exc.filename is None:  # memfit's own `raise FileNotFoundError("... ; pass ...")`
        return one_line(exc) if str(exc) else f"{type(exc).__name__}: check the path"
    files = " -> ".join(os.fsdecode(f) for f in (exc.filename, exc.filename2) if f is not None)
    fix = OS_FIXES.get(exc.errno, "check the path and try again")
    return f"{exc.strerror.lower()} ({files}): {fix}"


def user_message(exc: BaseException) -> str | None:
    """The one line for an error that is the user's to fix; None for a bug (the caller shows the traceback)."""
    top = _module(exc).split(".")[0]
    if _defined_by_memfit(exc):
        return one_line(exc)
    if isinstance(exc, OSError):
        return _os_error(exc)
    if isinstance(exc, json.JSONDecodeError):
        return (f"invalid JSON at line {exc.lineno} column {exc.colno} ({exc.msg}): the file is truncated or not "
                f"JSON; delete a corrupt cache file or fix the file")
    if top in FILE_FORMAT_LIBRARIES:
        return f"{one_line(exc)}: {FILE_FORMAT_LIBRARIES[top]}"
    if isinstance(exc, MemoryError) or (isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()):
        return (f"out of memory ({one_line(exc) or type(exc).__name__}): use a smaller micro_batch/seq_len, "
                f"a leaner stack (`memfit plan` finds what fits) or a machine with more memory")
    if isinstance(exc, OverflowError):
        return f"a number out of range ({one_line(exc)}): use a finite value of a sensible size"
    if isinstance(exc, ValueError) and not _in_package(_raised_in(exc), NUMERIC_LIBRARIES):
        return one_line(exc)
    if isinstance(exc, RuntimeError) and _raised_in(exc).startswith(MEMFIT_ROOT):
        return one_line(exc)
    return None


def exit_code(exc: BaseException) -> int:
    code = getattr(exc, "exit_code", 2)
    return code if isinstance(code, int) else 2
