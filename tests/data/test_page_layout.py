"""Running headers/footers, detected from repetition within one document (line numbers: test_line_numbers.py)."""
from __future__ import annotations

from pdf_factory import english_page

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
