"""Cache of extracted page texts, one JSON file per PDF keyed by the file's sha256.

Keyed by content, not path: renaming or moving a PDF keeps its cache entry, editing it invalidates it. The pypdf
version is stored and checked because a different pypdf extracts different text. Each entry carries its own checksum
(core.integrity.with_checksum, the one embedded-checksum form): an entry edited or damaged on disk fails that check
and is re-extracted, with one log line saying so - never reused, never fatal.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pypdf

from memfit.core.files import atomic_write_json
from memfit.core.integrity import checksum_problem, with_checksum

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    return Path(os.environ.get("MEMFIT_CACHE", Path.home() / ".cache" / "memfit")).expanduser() / "text"


LAYOUT = 2  # entries of another layout (1: a checksum over pages and warnings only) are re-extracted silently


class TextCache:
    def __init__(self, directory: Path | str | None = None):
        self.directory = Path(directory) if directory is not None else default_cache_dir()

    def _entry(self, sha256: str) -> Path:
        return self.directory / f"{sha256}.json"

    def load(self, sha256: str) -> tuple[list[str], list[str]] | None:
        """(pages, extraction warnings), or None when missing, corrupt or made by another pypdf version."""
        entry = self._entry(sha256)
        try:
            data = json.loads(entry.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("text cache entry %s is unreadable (%s); extracting the PDF again", entry, exc)
            return None
        if not isinstance(data, dict) or (data.get("pypdf"), data.get("sha256"), data.get("layout")) != (
                pypdf.__version__, sha256, LAYOUT):
            return None  # another pypdf (or an old entry layout): re-extracted without comment
        pages, warnings = data.get("pages"), data.get("warnings", [])
        problem = checksum_problem(data) or (None if isinstance(pages, list) and isinstance(warnings, list)
                                             else "its pages or warnings are not lists")
        if problem:
            log.warning("text cache entry %s is not used (%s); extracting the PDF again", entry, problem)
            return None
        return list(pages), list(warnings)

    def store(self, sha256: str, source: str, pages: list[str], warnings: list[str]) -> None:
        """Atomic (memfit.core.files) so an interrupted run never leaves a truncated entry."""
        entry = with_checksum({"sha256": sha256, "source": source, "pypdf": pypdf.__version__, "layout": LAYOUT,
                               "pages": pages, "warnings": warnings})
        try:
            atomic_write_json(self._entry(sha256), entry, indent=None, ensure_ascii=False)
        except OSError as exc:  # a read-only or full cache only costs a re-extraction next time
            log.warning("could not write text cache entry in %s: %s", self.directory, exc)
