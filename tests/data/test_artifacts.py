"""Extraction artefacts counted before and after cleaning: each kind found where it is and nowhere else, and the
cleaning pipeline's output re-measured from scratch (so a count of zero after cleaning is a measurement)."""
from __future__ import annotations

from pdf_factory import english_page

from memfit.data.pdf.artifacts import (ARTIFACTS, count_artifacts, count_known_header_lines, count_running_lines,
                                       measure_document)


def _page(n: int, extra: str = "") -> str:
    """A journal page: its running header, then body text with `extra` in the middle (away from the header and
    footer zones, where a line repeated on every page is furniture)."""
    body = english_page(n).split("\n")
    return "\n".join(["Nature Communications | (2022) 13:4431", *body[:6], extra, *body[6:]])


def test_each_kind_is_counted_in_the_raw_text():
    text = ("e\ufb03cient \ufb01sh a/f_ter\nagri-\nculture Contents ........ 3  wide\u00a0space \ufffd")
    counts = count_artifacts([text], text)
    assert set(counts) == {a.key for a in ARTIFACTS}
    assert counts["ligatures"] == 2 and counts["glyph_names"] == 1 and counts["hyphenations"] == 1
    assert counts["dot_leaders"] == 1 and counts["replacement_chars"] == 1 and counts["whitespace_runs"] == 2
    assert counts["running_lines"] == counts["line_numbers"] == counts["known_headers"] == 0
    clean = english_page(0)
    assert set(count_artifacts([clean], clean).values()) == {0}


def test_running_headers_need_repetition_and_known_headers_do_not():
    pages = [_page(n) for n in range(4)]
    assert count_running_lines(pages) == 4  # one header on each page
    assert count_running_lines(pages[:1]) == 0  # one page: nothing repeats
    assert count_known_header_lines(pages[0]) == 1  # the manifest's list matches a single page too
    assert count_known_header_lines("SUBJECT TO FINAL EDITS\nSummary for Policymakers\nDo Not Cite, Quote or "
                                    "Distribute 15-3\nthe SPM says") == 3


def test_cleaning_removes_what_was_counted_and_returns_the_clean_text():
    pages = [_page(n, extra="the e\ufb00ect of warm-\ning") for n in range(4)]
    measured = measure_document(pages)
    assert measured.before["running_lines"] == 4 and measured.after["running_lines"] == 0
    assert measured.before["ligatures"] == 4 and measured.after["ligatures"] == 0
    assert measured.before["hyphenations"] == 4 and measured.after["hyphenations"] == 0
    assert measured.raw_chars == len("\n".join(pages))
    assert "the effect of warming" in measured.clean_text and "Nature Communications" not in measured.clean_text
