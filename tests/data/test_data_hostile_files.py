"""Files a careless user leaves in the PDF folder: each is listed among the skipped with a reason, the others survive."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from pdf_factory import english_page, write_text_pdf

from memfit.data import extract_pdfs


@pytest.fixture
def good(pdf_dir):
    return [write_text_pdf(pdf_dir / f"good-{n}.pdf", [english_page(n)]) for n in range(2)]


def test_unreadable_file_is_skipped_and_the_folder_still_extracts(pdf_dir, good, tmp_path, monkeypatch):
    locked = write_text_pdf(pdf_dir / "locked.pdf", [english_page(7)])
    locked.chmod(0)
    if os.geteuid() == 0:  # root reads through chmod 000: refuse the open the way the kernel would for a user
        real_open = Path.open

        def denied(self, *args, **kwargs):
            if self.name == "locked.pdf":
                raise PermissionError(13, "Permission denied", str(self))
            return real_open(self, *args, **kwargs)

        monkeypatch.setattr(Path, "open", denied)
    corpus = extract_pdfs(pdf_dir, tmp_path / "cache")
    assert [d.name for d in corpus.documents] == ["good-0.pdf", "good-1.pdf"]
    (issue,) = corpus.errors
    assert issue.path.name == "locked.pdf" and issue.kind == "unreadable"
    assert "Permission denied" in issue.reason and "chmod" in issue.reason


def test_link_loops_broken_links_and_folders_named_pdf_are_listed_with_a_reason(pdf_dir, good, tmp_path):
    (pdf_dir / "loop.pdf").symlink_to(pdf_dir / "loop.pdf")
    (pdf_dir / "gone.pdf").symlink_to(tmp_path / "nowhere.pdf")
    (pdf_dir / "folder.pdf").mkdir()
    corpus = extract_pdfs(pdf_dir, tmp_path / "cache")
    assert [d.name for d in corpus.documents] == ["good-0.pdf", "good-1.pdf"]
    kinds = {i.path.name: i.kind for i in corpus.errors}
    assert kinds == {"loop.pdf": "symlink_loop", "gone.pdf": "broken_link", "folder.pdf": "not_a_file"}
    assert all(f"skipped {pdf_dir / name}" in corpus.summary() for name in kinds)


def test_a_short_chinese_pdf_is_left_out_of_training_through_extraction(pdf_dir, good, tmp_path, monkeypatch):
    # the issue's case end to end: a 348-character Chinese PDF was extracted, screened and trained on. The test PDF
    # writer has no CJK font, so the child process returns that text for the file, as pypdf does for the real one.
    from memfit.data.pdf import extract

    chinese = "气候变化是人类面临的最严峻挑战之一，全球变暖导致极端天气事件频发。" * 10
    real_read = extract.read_page_texts
    monkeypatch.setattr(extract, "read_page_texts",
                        lambda job: ([chinese], []) if job[0].name == "zh.pdf" else real_read(job))
    write_text_pdf(pdf_dir / "zh.pdf", [english_page(5)])
    corpus = extract_pdfs(pdf_dir, tmp_path / "cache")
    assert [d.name for d in corpus.documents] == ["good-0.pdf", "good-1.pdf"]
    assert [(i.path.name, i.kind) for i in corpus.errors] == [("zh.pdf", "non_english")]
    assert "--keep-non-english" in corpus.errors[0].reason
    kept = extract_pdfs(pdf_dir, tmp_path / "cache2", keep_non_english=True)
    assert "zh.pdf" in [d.name for d in kept.documents] and kept.errors == []
