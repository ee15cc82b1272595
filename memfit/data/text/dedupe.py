"""Duplicate documents, found before the split: a copy in training and another in the test split would score
memorised text as held-out text. Every source kind (PDF folders, text files, tables, saved and Hub datasets) goes
through the same check, so four identical .txt files give one document, not one test copy and three training ones.

Exact duplicates have the same text; near duplicates differ only in letter case, spacing or punctuation (a file
re-saved with other line breaks, a table row with trailing spaces). Only digests are held (two per document), so
the check streams over corpora larger than memory. Similar-but-edited texts (MinHash-style) are not detected.
"""
from __future__ import annotations

import hashlib
import re
from typing import Optional

_NOT_WORD = re.compile(r"[\W_]+")


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def near_text(text: str) -> str:
    """The text with case, spacing and punctuation removed: what two near duplicates share."""
    return _NOT_WORD.sub(" ", text.casefold()).strip()


class Duplicates:
    """Remembers the documents kept so far; `duplicate_of` says which earlier one a new text repeats."""

    def __init__(self) -> None:
        self._exact: dict[bytes, str] = {}
        self._near: dict[bytes, str] = {}

    def duplicate_of(self, text: str) -> Optional[str]:
        """The reason to skip `text` (naming the kept document it repeats), or None."""
        first = self._exact.get(_digest(text))
        if first is not None:
            return f"same text as {first}; skipped so no copy lands in both training and test"
        first = self._near.get(_digest(near_text(text)))
        if first is not None:
            return (f"nearly the same text as {first} (differs only in case, spacing or punctuation); skipped so no "
                    "copy lands in both training and test")
        return None

    def keep(self, text: str, name: str) -> None:
        self._exact.setdefault(_digest(text), name)
        self._near.setdefault(_digest(near_text(text)), name)
