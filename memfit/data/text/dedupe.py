"""Duplicate documents, found before the split: a copy in training and another in the test split would score
memorised text as held-out text. Every source kind (PDF folders, text files, tables, saved and Hub datasets) goes
through the same check, so four identical .txt files give one document, not one test copy and three training ones.

Exact duplicates have the same text; near duplicates differ only in letter case, spacing or punctuation (a file
re-saved with other line breaks, a table row with trailing spaces). Only digests are held (one entry per document), so
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
    """The documents kept so far, as one entry per document (a 16-byte digest of its near text -> an 8-byte digest
    of its exact text and its name): about 200 bytes each, so a corpus of millions of rows can be checked."""

    def __init__(self) -> None:
        self._first: dict[bytes, tuple[bytes, str]] = {}

    def check(self, text: str, name: str) -> Optional[str]:
        """The reason to skip `text` (naming the kept document it repeats), or None - and then it is kept."""
        exact, near = _digest(text)[:8], _digest(near_text(text))[:16]
        first = self._first.setdefault(near, (exact, name))
        if first == (exact, name):
            return None
        if first[0] == exact:
            return f"same text as {first[1]}; skipped so no copy lands in both training and test"
        return (f"nearly the same text as {first[1]} (differs only in case, spacing or punctuation); skipped so no "
                "copy lands in both training and test")
