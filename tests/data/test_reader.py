"""Reading one PDF: the checks before parsing and the page texts, each failure a `PdfProblem` whose kind code reads
and whose reason names the fix (called here directly, in this process, without the isolating child)."""
from __future__ import annotations

import pytest
from pdf_factory import english_page, write_blank_pdf, write_encrypted_pdf, write_text_pdf

from memfit.data.pdf.reader import PdfProblem, check_file, read_page_texts

LIMIT = 1 << 20


def _problem(call, *args) -> PdfProblem:
    with pytest.raises(PdfProblem) as caught:
        call(*args)
    return caught.value


def test_a_readable_pdf_passes_the_checks_and_gives_each_pages_text(pdf_dir):
    path = write_text_pdf(pdf_dir / "good.pdf", [english_page(0), english_page(1)])
    check_file(path, LIMIT)
    texts, warnings = read_page_texts((path, 10))
    assert len(texts) == 2 and english_page(0).split()[0] in texts[0] and warnings == []


def _bad_file(folder, case: str):
    """A file (or what stands where one should) of each kind the checks name."""
    path = folder / f"{case}.pdf"
    if case == "folder":
        path.mkdir()
    elif case == "broken-link":
        path.symlink_to(folder / "nowhere.pdf")
    elif case == "link-loop":
        path.symlink_to(path)
    else:
        path.write_bytes({"empty": b"", "html": b"<!DOCTYPE html><html>", "zip": b"PK\x03\x04 a zip"}[case])
    return path


@pytest.mark.parametrize("case, kind, fix", [
    ("folder", "not_a_file", "sub-folders are not searched"), ("broken-link", "broken_link", "fix the link"),
    ("link-loop", "symlink_loop", "replace it"), ("empty", "empty_file", "re-download"),
    ("html", "not_pdf", "an HTML page saved as .pdf"), ("zip", "not_pdf", "renamed to .pdf"),
])
def test_files_that_are_no_readable_pdf_are_named_before_parsing(pdf_dir, case, kind, fix):
    problem = _problem(check_file, _bad_file(pdf_dir, case), LIMIT)
    assert problem.kind == kind and fix in problem.reason


def test_the_size_and_page_limits_name_the_setting_that_raises_them(pdf_dir):
    path = write_text_pdf(pdf_dir / "long.pdf", [english_page(n) for n in range(3)])
    big = _problem(check_file, path, path.stat().st_size - 1)
    assert big.kind == "too_large" and "max_file_bytes" in big.reason
    pages = _problem(read_page_texts, (path, 2))
    assert pages.kind == "too_many_pages" and "3 pages is over the 2-page limit (max_pages)" in pages.reason


def test_encrypted_and_truncated_pdfs_are_named_with_the_fix(pdf_dir):
    good = write_text_pdf(pdf_dir / "good.pdf", [english_page(0)])
    locked = _problem(read_page_texts, (write_encrypted_pdf(pdf_dir / "locked.pdf", good), 10))
    assert locked.kind == "encrypted" and "decrypt" in locked.reason
    (pdf_dir / "cut.pdf").write_bytes(good.read_bytes()[:200])
    assert _problem(read_page_texts, (pdf_dir / "cut.pdf", 10)).kind == "corrupt"


def test_an_image_only_pdf_reads_as_empty_pages_not_as_a_problem(pdf_dir):
    texts, _ = read_page_texts((write_blank_pdf(pdf_dir / "scan.pdf", n_pages=2), 10))
    assert texts == ["", ""]  # the extraction's screening names it (no_text), with the OCR fix


def test_a_problem_survives_the_trip_back_from_the_child_process():
    import pickle

    problem = pickle.loads(pickle.dumps(PdfProblem("corrupt", "re-export it")))
    assert (problem.kind, problem.reason) == ("corrupt", "re-export it")
