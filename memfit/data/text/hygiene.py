"""Which files a text or table source may read: regular files only, and text that is text.

A FIFO named `notes.txt` would block `read()` forever, a device never ends, a folder named `notes.txt` or a link
that points at itself raises mid-run; each is named with a reason instead (`FileIssue`), and the other files are
read. A file can be valid UTF-8 and still be binary (7-bit data, NULs, control bytes): training on it teaches
noise, so it is refused per file like bytes that are not UTF-8.
"""
from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Optional

from memfit.data.errors import FileIssue

MAX_CONTROL_SHARE = 0.01  # control characters (other than tab, newlines, form feed) in real text: ~0
CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")  # C0 and C1 controls, less \t \n \v \f \r


def not_a_regular_file(path: Path) -> Optional[FileIssue]:
    """Why `path` (followed through links) is no regular file to read, or None when it is one."""
    try:
        info = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return FileIssue(path, "symlink_loop", "a symbolic link that points back to itself (a loop): replace "
                                                   "it with the real file or remove it")
        if os.path.islink(path):
            return FileIssue(path, "broken_link", f"a symbolic link to {os.readlink(path)!r}, which does not "
                                                  "exist: fix the link or remove it")
        return FileIssue(path, "unreadable", f"cannot be read ({exc.strerror or exc}); fix its permissions or "
                                             "remove it")
    if stat.S_ISREG(info.st_mode):
        return None
    if stat.S_ISDIR(info.st_mode):
        return FileIssue(path, "not_a_file", "a folder named like a file, not a file; rename it or move its files")
    kind = "a FIFO (named pipe)" if stat.S_ISFIFO(info.st_mode) else "a socket" if stat.S_ISSOCK(info.st_mode) \
        else "a device"
    return FileIssue(path, "not_a_file", f"{kind}, not a regular file: reading it could block forever; remove it "
                                         "or point the source at a regular file")


def candidate_files(root: Path, suffixes: Iterable[str]) -> list[Path]:
    """Every entry under `root` whose name ends in one of `suffixes` (folders, links and FIFOs included, so that
    `not_a_regular_file` names them), without following links to folders (a link loop cannot recurse)."""
    wanted = tuple(suffixes)
    found = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        found += [Path(folder) / name for name in (*dirs, *files) if name.endswith(wanted)]
    return sorted(found)


def binary_reason(text: str) -> Optional[str]:
    """Why decoded text looks binary (NUL bytes, a high share of control characters), or None."""
    if "\x00" in text:
        return f"holds NUL characters (first at character {text.index(chr(0))}): a binary file, not text"
    controls = len(CONTROL.findall(text))
    if controls > MAX_CONTROL_SHARE * len(text):
        return (f"{controls} of {len(text)} characters are control characters: binary data that happens to "
                "decode as UTF-8, not text")
    return None
