"""Draft line numbers (IPCC Chapter 15 "Final Government Distribution"): detected as a run of consecutive numbers
n, n+1, n+2, ... at the ends (or starts) of a page's lines, then stripped.

pypdf emits them at the end of each line ("... climate impacts 2 \n"), sometimes glued to a trailing hyphen
("low-8 \ncarbon"); other extractors put them at the start ("3 Lead Authors: ...").
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from memfit.data.pdf.page_layout import MIN_PAGES

MIN_NUMBERED_LINES = 5
# Share of a page's non-empty lines that must carry the consecutive numbers: keeps numbered lists, table rows and
# figure tick labels (short runs on a page full of other text) from being mistaken for line numbering.
MIN_NUMBERED_SHARE = 0.5
_LEADING_NUMBER = re.compile(r"[ \t]*(\d{1,3})(?:[ \t]+|$)")
_DIGITS = "0123456789"  # str.isdigit would accept superscripts such as "²"

Splitter = Callable[[str], "tuple[str, int] | None"]


def split_trailing_number(line: str) -> tuple[str, int] | None:
    """("text ", 12) for "text 12 " (or "low-", 8 for "low-8"); None when the line does not end in a line number.
    Scans from the end by hand: a regex anchored at $ would be tried at every position of every line."""
    body = line.rstrip(" \t")
    start = len(body)
    while start and body[start - 1] in _DIGITS:
        start -= 1
    separated = start == 0 or body[start - 1].isspace() or body[start - 1] in "-\u2013"
    return (body[:start], int(body[start:])) if 1 <= len(body) - start <= 3 and separated else None


def split_leading_number(line: str) -> tuple[str, int] | None:
    match = _LEADING_NUMBER.match(line)
    return (line[match.end():], int(match.group(1))) if match else None


def _longest_consecutive_chain(numbers: Sequence[int | None]) -> list[int]:
    """Indices of the longest run of lines numbered n, n+1, n+2, ... in page order (other lines may sit between)."""
    chains: dict[int, list[int]] = {}
    best: list[int] = []
    for i, number in enumerate(numbers):
        if number is None:
            continue
        chain = chains.get(number - 1, []) + [i]
        if len(chain) > len(chains.get(number, [])):
            chains[number] = chain
        if len(chain) > len(best):
            best = chain
    return best


def find_line_numbers(page: str, min_share: float = MIN_NUMBERED_SHARE,
                      min_lines: int = MIN_NUMBERED_LINES) -> tuple[Splitter, list[int]]:
    """Which lines carry draft line numbers: (the splitter that found them, line indices); no indices if none."""
    lines = page.split("\n")
    content_lines = sum(1 for line in lines if line.strip())
    best_splitter: Splitter = split_trailing_number
    best_chain: list[int] = []
    for splitter in (split_trailing_number, split_leading_number):
        numbers = [found[1] if (found := splitter(line)) else None for line in lines]
        chain = _longest_consecutive_chain(numbers)
        if len(chain) > len(best_chain):
            best_splitter, best_chain = splitter, chain
    if len(best_chain) < min_lines or len(best_chain) < min_share * content_lines:
        return best_splitter, []
    return best_splitter, best_chain


def _strip_numbers(page: str, splitter: Splitter, indices: list[int]) -> str:
    lines = page.split("\n")
    for i in indices:
        lines[i] = splitter(lines[i])[0]  # type: ignore[index]
    return "\n".join(lines)


def remove_line_numbers(pages: Sequence[str]) -> tuple[list[str], int]:
    """Strip draft line numbers from a document; returns the pages and the count removed.

    Pages that are mostly numbered lines are detected on their own. Once a document is known to be numbered, pages
    dominated by tables or figures (few numbered lines) are accepted with a shorter run of numbers.
    """
    found = [find_line_numbers(page) for page in pages]
    if sum(bool(indices) for _, indices in found) >= MIN_PAGES:
        found = [(splitter, indices) if indices else find_line_numbers(page, min_share=0.0, min_lines=3)
                 for page, (splitter, indices) in zip(pages, found)]
    cleaned = [_strip_numbers(page, splitter, indices) for page, (splitter, indices) in zip(pages, found)]
    return cleaned, sum(len(indices) for _, indices in found)
