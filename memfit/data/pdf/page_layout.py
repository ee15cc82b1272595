"""Running headers and footers (page furniture) of one document.

They are detected from repetition *within one document* rather than from a list of known strings, so a new
publisher's layout is handled without code changes. The known IPCC/UNFCCC/Nature patterns from the corpus
manifest are only used to *measure* the result (see `artifacts.py`).
"""
from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

# Header/footer lines sit in the first/last few non-empty lines of a page (pypdf emits them in content-stream order,
# which puts some footers at the top and some headers at the bottom, so both ends are searched).
ZONE_LINES = 5
# A line is "running" when it appears in the zone of at least this share of the pages (and at least MIN_PAGES pages).
MIN_PAGE_SHARE = 0.25
MIN_PAGES = 3
# Short running tokens ("SPM", "CCP7", "AVII") get glued to neighbouring text by pypdf ("GlossarySPM", "CCP7CCP7").
MAX_GLUED_TOKEN_CHARS = 8
# IPCC's "SPM" tab marker also sits on title pages of chapters where it does not repeat ("Annex VII: GlossarySPM").
ALWAYS_RUNNING = {"spm": "SPM"}

_SPACES = re.compile(r"[\s\u00a0\u2000-\u200b\u202f\u205f\u3000]+")
_DIGITS = re.compile(r"\d+")
_NOT_KEY = re.compile(r"[^\w#]|_")  # after digits became "#", \w is letters only


def normalise_line(line: str) -> str:
    """Whitespace collapsed and digits replaced by "#", so "p.11" and "p.12" read the same."""
    return _DIGITS.sub("#", _SPACES.sub(" ", line).strip())


def line_key(line: str) -> str:
    """Comparison key for header detection: letters and "#" only, lower-cased, so that punctuation and spacing
    variants of one header ("Vol.:(0123456789)" / "Vol:.(1234567890)", a trailing "/") count as the same line."""
    normalised = normalise_line(line)
    letters_only = _NOT_KEY.sub("", normalised.lower())
    # Without letters (page numbers) punctuation is all there is: "12" is a page number, "(12)" an equation number.
    return letters_only if letters_only.strip("#") else normalised


def _zone_indices(lines: Sequence[str], zone: int) -> list[int]:
    non_empty = [i for i, line in enumerate(lines) if line.strip()]
    return sorted(set(non_empty[:zone] + non_empty[-zone:]))


def find_running_lines(pages: Sequence[str], zone: int = ZONE_LINES, min_share: float = MIN_PAGE_SHARE,
                       min_pages: int = MIN_PAGES) -> dict[str, str]:
    """Lines that repeat in the header/footer zone of many pages of one document: {line_key: an example line}."""
    counts: Counter[str] = Counter()
    examples: dict[str, str] = {}
    pages_with_text = 0
    for page in pages:
        lines = page.split("\n")
        keys = {}
        for i in _zone_indices(lines, zone):
            keys.setdefault(line_key(lines[i]), lines[i].strip())
        keys.pop("", None)
        pages_with_text += bool(keys)
        counts.update(keys.keys())
        for key, example in keys.items():
            examples.setdefault(key, example)
    threshold = max(min_pages, math.ceil(min_share * pages_with_text))
    return {key: examples[key] for key, count in counts.items() if count >= threshold}


def _glued_token_patterns(running: dict[str, str]) -> list[re.Pattern[str]]:
    tokens = {example for key, example in running.items()
              if " " not in example and len(example) <= MAX_GLUED_TOKEN_CHARS and sum(c.isalpha() for c in key) >= 2}
    sources = sorted((r"\d+".join(map(re.escape, _DIGITS.split(t))) for t in tokens), key=len, reverse=True)
    return [re.compile(f"^(?:{src})|(?:{src})$") for src in sources]


def _strip_glued_tokens(line: str, patterns: Sequence[re.Pattern[str]]) -> str:
    """Remove running tokens glued to either end of a line ("Annex VII: GlossarySPM" -> "Annex VII: Glossary")."""
    previous = None
    while previous != line and line:
        previous, line = line, line.strip()
        for pattern in patterns:
            line = pattern.sub("", line, count=1).strip()
    return line


def remove_running_lines(page: str, running: dict[str, str], zone: int = ZONE_LINES) -> tuple[str, int]:
    """Drop header/footer lines of one page; returns the page and how many lines were removed or un-glued.

    Only the zone is touched, so a body line that happens to equal a header survives. Glued variants are handled
    by stripping short running tokens off zone lines and by joining a header that pypdf split over two lines.
    """
    running = {**ALWAYS_RUNNING, **running}
    patterns = _glued_token_patterns(running)
    lines = page.split("\n")
    zone_idx = _zone_indices(lines, zone)
    drop: set[int] = set()
    unglued_count = 0
    for pos, i in enumerate(zone_idx):
        if i in drop:
            continue
        if line_key(lines[i]) in running:
            drop.add(i)
            continue
        nxt = zone_idx[pos + 1] if pos + 1 < len(zone_idx) else None
        if nxt is not None and line_key(lines[i] + lines[nxt]) in running:
            drop.update((i, nxt))  # "Summary \nfor Policymakers"
            continue
        unglued = _strip_glued_tokens(lines[i], patterns)
        if unglued == lines[i].strip():
            continue
        if not unglued or line_key(unglued) in running:
            drop.add(i)
        else:
            lines[i], unglued_count = unglued, unglued_count + 1
    kept = [line for i, line in enumerate(lines) if i not in drop]
    return "\n".join(kept), len(drop) + unglued_count
