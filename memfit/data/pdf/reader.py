"""Reading one PDF with pypdf: cheap checks in the parent, page texts in an isolated child (see isolation.py).

Every failure becomes a `PdfProblem(kind, reason)` whose reason names the problem and the fix; the caller adds the
file name.
"""
from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

from pypdf import PdfReader
from pypdf.errors import DependencyError, FileNotDecryptedError, PdfReadError

MIB = 1 << 20
MAX_WARNINGS = 5


class PdfProblem(Exception):
    def __init__(self, kind: str, reason: str):
        super().__init__(kind, reason)  # both in args, so it pickles back from the child process
        self.kind, self.reason = kind, reason


def check_file(path: Path, max_file_bytes: int) -> None:
    """Problems visible without parsing: not a readable file, empty, too big, or not a PDF at all."""
    try:
        _check_readable(path, max_file_bytes)
    except OSError as exc:
        raise PdfProblem("unreadable", f"cannot be read ({exc.strerror or exc}): fix its permissions (e.g. "
                                       f"`chmod a+r '{path}'`) or remove it from the folder") from None


def _check_readable(path: Path, max_file_bytes: int) -> None:
    if path.is_dir():
        raise PdfProblem("not_a_file", "a folder named like a PDF, not a file: sub-folders are not searched; move "
                                       "its PDFs up or rename it")
    if path.is_symlink() and not path.exists():
        try:
            path.stat()
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise PdfProblem("symlink_loop", "a symbolic link that points back to itself (a loop): replace it "
                                                 "with the real file or remove it") from None
        raise PdfProblem("broken_link", f"a symbolic link to {os.readlink(path)!r}, which does not exist: fix the "
                                        "link or remove it")
    size = path.stat().st_size
    if size == 0:
        raise PdfProblem("empty_file", "the file is empty (0 bytes); re-download or re-export it, or delete it")
    if size > max_file_bytes:
        raise PdfProblem("too_large", f"{size / MIB:.1f} MiB is over the {max_file_bytes / MIB:.1f} MiB limit "
                                      "(max_file_bytes); split the PDF or raise the limit")
    with path.open("rb") as handle:
        head = handle.read(1024)
    if b"%PDF-" not in head:
        hint = "an HTML page saved as .pdf" if b"<html" in head.lower() or b"<!doctype" in head.lower() else \
            "another kind of file renamed to .pdf"
        raise PdfProblem("not_pdf", f"not a PDF: the file starts with {head[:20]!r} ({hint}?); "
                                    "replace it with the real PDF or remove it from the folder")


class _WarningCollector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message not in self.messages and len(self.messages) < MAX_WARNINGS:
            self.messages.append(message)


def _open(path: Path) -> PdfReader:
    try:
        reader = PdfReader(path)
    except PdfReadError as exc:
        raise PdfProblem("corrupt", f"corrupt or truncated PDF ({exc}); re-download or re-export it") from None
    if reader.is_encrypted:
        try:
            unlocked = reader.decrypt("")  # owner-password-only files open with an empty user password
        except (DependencyError, NotImplementedError, PdfReadError) as exc:
            raise PdfProblem("encrypted", f"encrypted PDF that pypdf cannot open ({exc}); "
                                          "save a decrypted copy (e.g. `qpdf --decrypt`)") from None
        if not unlocked:
            raise PdfProblem("encrypted", "encrypted (password-protected) PDF; save a decrypted copy "
                                          "(e.g. `qpdf --password=... --decrypt in.pdf out.pdf`) or remove it")
    return reader


def read_page_texts(job: tuple[Path, int]) -> tuple[list[str], list[str]]:
    """(text of each page, pypdf warnings). Runs in the child process."""
    path, max_pages = job
    collector = _WarningCollector()
    pypdf_logger = logging.getLogger("pypdf")
    pypdf_logger.addHandler(collector)
    try:
        reader = _open(path)
        try:
            n_pages = len(reader.pages)
        except (PdfReadError, FileNotDecryptedError, KeyError, ValueError) as exc:
            raise PdfProblem("corrupt", f"corrupt PDF: its page tree cannot be read ({exc}); re-export it") from None
        if n_pages == 0:
            raise PdfProblem("corrupt", "the PDF has no pages; re-download or re-export it")
        if n_pages > max_pages:
            raise PdfProblem("too_many_pages", f"{n_pages} pages is over the {max_pages}-page limit (max_pages); "
                                               "split the PDF or raise the limit")
        texts, failed = [], []
        for number, page in enumerate(reader.pages, start=1):
            try:
                texts.append(page.extract_text() or "")
            except Exception as exc:  # noqa: BLE001 - one broken page must not lose the document
                texts.append("")
                failed.append(f"page {number}: text extraction failed ({type(exc).__name__}: {exc})")
        if len(failed) == n_pages:
            raise PdfProblem("corrupt", f"text extraction failed on every page ({failed[0]}); re-export the PDF")
        return texts, failed[:MAX_WARNINGS] + collector.messages
    finally:
        pypdf_logger.removeHandler(collector)
