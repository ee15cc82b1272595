"""Draft line numbers: a run of consecutive numbers at the ends (or starts) of a page's lines is stripped; numbered
lists, years and table cells are not line numbers."""
from __future__ import annotations

from pdf_factory import english_page

from memfit.data.pdf.line_numbers import (find_line_numbers, remove_line_numbers, split_leading_number,
                                          split_trailing_number)


def test_a_line_number_is_one_to_three_digits_set_apart_from_the_text():
    assert split_trailing_number("climate impacts 12 ") == ("climate impacts ", 12)
    assert split_trailing_number("the low-8") == ("the low-", 8)  # glued to a hyphen, as pypdf emits it
    assert split_trailing_number("7") == ("", 7)
    for not_numbered in ("emissions in 2019", "CO2", "area km²", "no number here", ""):
        assert split_trailing_number(not_numbered) is None
    assert split_leading_number("3 Lead Authors") == ("Lead Authors", 3)
    assert split_leading_number("2019 was warm") is None and split_leading_number("Lead Authors 3") is None


def test_only_a_consecutive_run_over_most_of_the_page_counts():
    body = english_page(4).split("\n")
    page = _numbered(body, start=40)
    splitter, indices = find_line_numbers(page)
    assert splitter is split_trailing_number and indices == list(range(len(body)))
    shuffled = "\n".join(f"{line} {n} " for n, line in zip((5, 9, 2, 7, 3, 8, 1, 6, 4, 11, 10, 12), body))
    assert find_line_numbers(shuffled)[1] == []  # numbers out of order: its longest run (2, 3, 4) is too short
    short = _numbered(body[:4]) + "\n" + "\n".join(body[4:])  # 4 numbered lines: under the minimum run
    assert find_line_numbers(short)[1] == []


def _numbered(lines: list[str], start: int = 1, leading: bool = False) -> str:
    return "\n".join(f"{n} {line}" if leading else f"{line} {n} " for n, line in enumerate(lines, start))


def test_trailing_draft_line_numbers_are_stripped():
    body = english_page(1).split("\n")
    page = "Final Government Distribution\n" + _numbered(body) + "\nACCEPTED VERSION"
    pages, removed = remove_line_numbers([page] * 3)
    assert removed == 3 * len(body)
    assert [line.rstrip() for line in pages[0].split("\n")] == ["Final Government Distribution", *body,
                                                                "ACCEPTED VERSION"]


def test_line_number_glued_to_a_trailing_hyphen():
    lines = english_page(1).split("\n")
    lines[4] += " the low-"
    page = _numbered(lines).replace("low- 5 ", "low-5 ")  # pypdf's "low-8 \ncarbon" in Chapter 15
    (cleaned,), removed = remove_line_numbers([page])
    assert removed == len(lines)
    assert "the low-\n" in cleaned and "low-5" not in cleaned


def test_leading_line_numbers_are_stripped():
    body = english_page(2).split("\n")
    pages, removed = remove_line_numbers([_numbered(body, leading=True)])
    assert removed == len(body)
    assert [line.strip() for line in pages[0].split("\n")] == body


def test_numbered_lists_and_years_are_not_line_numbers():
    page = "\n".join([
        "1 Electricity systems", "Enabling low-carbon electricity", "2 Transportation", "Reducing transport activity",
        "3 Buildings and cities", *english_page(3).split("\n"), "4 Industry", "5 Farms", "emissions fell in 2019",
    ])
    assert remove_line_numbers([page]) == ([page], 0)


def test_table_pages_of_a_numbered_document_use_a_shorter_run():
    numbered = [_numbered(english_page(n).split("\n")) for n in range(4)]
    rows = ["2013 2014 2015", "687 584 680", "Source Type", "n/a n/a", "339 392 472", "UNFCCC SCF", "total low"]
    table = _numbered(["Table 15.1 flows", "between 2013 and 2020", "as reported"]) + "\n" + "\n".join(rows)
    assert remove_line_numbers([table])[1] == 0  # alone, 3 numbered lines out of 10 are not enough
    pages, removed = remove_line_numbers(numbered + [table])
    assert removed == 4 * 12 + 3
    assert pages[-1].split("\n")[3:] == rows
