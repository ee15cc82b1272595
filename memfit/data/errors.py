"""Errors of the data pipeline: a fatal `DataError`, and per-file `FileIssue`s that never stop the other files."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class DataError(ValueError):
    """The input as a whole is unusable (no directory, no PDFs, too few documents to split)."""


@dataclass(frozen=True)
class FileIssue:
    """One file that was skipped (in `Corpus.errors`) or kept with a caveat (in `Corpus.warnings`).

    `kind` is a stable keyword for code and tests; `reason` is the sentence for the user: what is wrong and the fix.
    """

    path: Path
    kind: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"
