"""Counting extraction artefacts, so cleaning is measured rather than assumed.

"Before" counts run on pypdf's page texts, "after" counts on the output of the cleaning pipeline. Running headers
and line numbers are re-detected from scratch on the cleaned pages (not looked up in what was removed), and the
manifest's known header strings are counted independently of the detector, as a cross-check.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from memfit.data.pdf.clean import (
    DOT_LEADER, EOL_HYPHEN, GLYPH_NAME_LIGATURE, HORIZONTAL_SPACE_RUN, REPLACEMENT_CHARACTER, UNICODE_LIGATURES,
    CleanOptions, clean_pages, join_pages,
)
from memfit.data.pdf.line_numbers import remove_line_numbers
from memfit.data.pdf.page_layout import find_running_lines, normalise_line, remove_running_lines

# Header/footer lines the corpus manifest lists (IPCC, UNFCCC, Nature-family), matched on whole normalised lines.
KNOWN_HEADER_LINE = re.compile("|".join([
    r"Summary for Policymakers", r"SPM", r".*[a-z]SPM", r"(?:CCP#)+", r"ACCEPTED VERSION", r"SUBJECT TO FINAL EDITS",
    r"Final Government Distribution.*", r"Do Not Cite, Quote or Distribute.*", r"FCCC/CP/#/#/Add\.#",
    r"Article https://doi\.org/.*", r"Nature Communications \|.*", r"Vol[.:]+\(#\)Scientific Reports.*",
    r"www\.nature\.com/scientificreports/?",
]))


def count_known_header_lines(text: str) -> int:
    return sum(bool(KNOWN_HEADER_LINE.fullmatch(normalise_line(line))) for line in text.split("\n"))


def count_running_lines(pages: Sequence[str]) -> int:
    running = find_running_lines(pages)
    return sum(remove_running_lines(page, running)[1] for page in pages)


@dataclass(frozen=True)
class Artifact:
    key: str
    label: str  # column header
    count_text: Callable[[str], int] | None = None  # counted on the whole text
    count_pages: Callable[[Sequence[str]], int] | None = None  # counted on the page list

    def count(self, pages: Sequence[str], text: str) -> int:
        return self.count_pages(pages) if self.count_pages else self.count_text(text)  # type: ignore[misc]


ARTIFACTS = (
    Artifact("ligatures", "ligat", lambda t: sum(t.count(c) for c in UNICODE_LIGATURES)),
    Artifact("glyph_names", "glyph", lambda t: len(GLYPH_NAME_LIGATURE.findall(t))),
    Artifact("hyphenations", "hyph", lambda t: len(EOL_HYPHEN.findall(t))),
    Artifact("running_lines", "runhdr", count_pages=count_running_lines),
    Artifact("known_headers", "knownhdr", count_known_header_lines),
    Artifact("line_numbers", "lineno", count_pages=lambda pages: remove_line_numbers(pages)[1]),
    Artifact("replacement_chars", "U+FFFD", lambda t: t.count(REPLACEMENT_CHARACTER)),
    Artifact("dot_leaders", "dots", lambda t: len(DOT_LEADER.findall(t))),
    Artifact("whitespace_runs", "ws", lambda t: len(HORIZONTAL_SPACE_RUN.findall(t))),
)


def count_artifacts(pages: Sequence[str], text: str) -> dict[str, int]:
    return {artifact.key: artifact.count(pages, text) for artifact in ARTIFACTS}


@dataclass(frozen=True)
class DocumentMeasurement:
    before: dict[str, int]
    after: dict[str, int]
    raw_chars: int
    clean_text: str


def measure_document(pages: Sequence[str], options: CleanOptions = CleanOptions()) -> DocumentMeasurement:
    """Artefact counts before and after cleaning, plus the clean text (so callers need not clean twice)."""
    raw_text = "\n".join(pages)
    cleaned = clean_pages(pages, options)
    clean_text = join_pages(cleaned, options)
    return DocumentMeasurement(count_artifacts(pages, raw_text), count_artifacts(cleaned, clean_text), len(raw_text),
                               clean_text)
