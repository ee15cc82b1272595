"""Running headers/footers and draft line numbers, detected from repetition within one document."""
from __future__ import annotations

from pdf_factory import english_page

from memfit.data.pdf.line_numbers import remove_line_numbers
from memfit.data.pdf.page_layout import find_running_lines, remove_running_lines


def _strip(pages: list[str]) -> list[str]:
    running = find_running_lines(pages)
    return [remove_running_lines(page, running)[0] for page in pages]


def test_ipcc_spm_headers_and_page_numbers_are_removed():
    pages = [f"{n}\nSPM\nSummary for Policymakers\n{english_page(n)}" for n in range(3, 9)]
    cleaned = _strip(pages)
    for n, page in zip(range(3, 9), cleaned):
        assert page == english_page(n)


def test_variants_differing_in_digits_and_punctuation_count_as_one_header():
    pages = [f"{n}\nVol{'.:' if n % 2 else ':.'}(0123456789)Scientific Reports | (2021) 11:1739 | https://doi.org/x\n"
             f"www.nature.com/scientificreports{'/' if n > 1 else ''}\n{english_page(n)}" for n in range(1, 7)]
    assert _strip(pages) == [english_page(n) for n in range(1, 7)]


def test_glued_and_split_header_variants():
    body = [english_page(n) for n in range(6)]
    pages = [f"CCP7\n{n + 2369}\nTropical Forests Cross-Chapter Paper 7\n{body[n]}" for n in range(5)]
    pages.append(f"CCP7CCP7\n2375\nSummary \nfor Policymakers\n{body[5]}")  # glued token, header split in two lines
    pages += [f"Summary for Policymakers\n{english_page(n)}" for n in range(10, 13)]
    cleaned = _strip(pages)
    assert cleaned[:6] == body
    glossary = [f"Annex VII: GlossarySPM\n{english_page(20)}"]
    glossary += [f"Annex VII Glossary\n{english_page(n)}" for n in range(4)]
    assert _strip(glossary)[0] == english_page(20)  # "SPM" is IPCC's tab marker even where it does not repeat


def test_chapter15_draft_furniture_is_removed():
    pages = [f"Final Government Distribution  Chapter 15 IPCC AR6 WGIII \n \nDo Not Cite, Quote or Distribute 15-{n}  "
             f"Total pages: 157 \n{english_page(n)}\nACCEPTED VERSION \nSUBJECT TO FINAL EDITS" for n in range(3, 9)]
    assert [page.strip() for page in _strip(pages)] == [english_page(n) for n in range(3, 9)]


def test_body_lines_that_repeat_outside_the_zone_are_kept():
    repeated = "See also Mitigation."
    pages = [f"{n}\n{english_page(n, lines=6)}\n{repeated}\n{english_page(n + 50, lines=6)}" for n in range(6)]
    assert all(repeated in page for page in _strip(pages))


def test_too_few_pages_means_no_header_detection():
    pages = [f"Header\n{english_page(n)}" for n in range(2)]
    assert find_running_lines(pages) == {}


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
