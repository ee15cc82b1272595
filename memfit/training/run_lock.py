"""One writer per run folder: `<folder>/.memfit.lock` names its holder (pid, host, start time).

A second run into the same folder is refused with the holder's identity and the fix. A lock whose holder is gone (same
host, pid no longer alive) was left by a crash or `kill -9` and is taken over. The file is created with O_EXCL, so
two runs starting at the same moment cannot both win. Re-entrant within one process: the fine-tune job holds the run
folder and the training loop it calls asks for the same one.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any, Optional

log = logging.getLogger(__name__)

LOCK_FILE = ".memfit.lock"
_held: dict[Path, int] = {}  # folders this process holds -> nesting depth


class RunLockedError(ValueError):
    """Another live process is writing into the run folder."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def read_holder(folder: str | Path) -> Optional[dict[str, Any]]:
    try:
        return json.loads((Path(folder) / LOCK_FILE).read_text())
    except (OSError, ValueError):
        return None


class RunLock:
    """Context manager; `folder=None` is a no-op (no output folder, or not the main process)."""

    def __init__(self, folder: str | Path | None):
        self.folder = Path(folder).resolve() if folder is not None else None

    def __enter__(self) -> "RunLock":
        if self.folder is None:
            return self
        if self.folder in _held:
            _held[self.folder] += 1
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
        for _ in range(2):  # second try after removing a stale lock
            try:
                fd = os.open(self.folder / LOCK_FILE, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._clear_stale_or_refuse()
                continue
            with os.fdopen(fd, "w") as handle:
                json.dump(me, handle)
                handle.flush()
                os.fsync(handle.fileno())
            _held[self.folder] = 1
            return self
        raise RunLockedError(f"could not take the lock {self.folder / LOCK_FILE}: another run keeps re-creating it")

    def _clear_stale_or_refuse(self) -> None:
        holder = read_holder(self.folder)
        if holder is None:  # unreadable: a holder killed between create and write; it holds nothing
            log.warning("removing an unreadable lock file %s", self.folder / LOCK_FILE)
        elif holder.get("host") != socket.gethostname() or _alive(int(holder.get("pid", -1))):
            raise RunLockedError(
                f"{self.folder} is in use by another memfit run (pid {holder.get('pid')} on {holder.get('host')}, "
                f"started {holder.get('started')}): wait for it to finish or pick another output folder / run name; "
                f"if that process is gone, delete {self.folder / LOCK_FILE}")
        else:
            log.warning("taking over the stale lock of pid %s (started %s), which is no longer running",
                        holder.get("pid"), holder.get("started"))
        (self.folder / LOCK_FILE).unlink(missing_ok=True)

    def __exit__(self, *exc_info) -> None:
        if self.folder is None:
            return
        _held[self.folder] -= 1
        if _held[self.folder] == 0:
            del _held[self.folder]
            (self.folder / LOCK_FILE).unlink(missing_ok=True)
