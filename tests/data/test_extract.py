"""Extraction: provenance, the text cache, and every kind of bad input (one bad file never loses the others)."""
from __future__ import annotations

import json
import re

import pytest
from pdf_factory import english_page, pdf_bytes, write_blank_pdf, write_encrypted_pdf, write_text_pdf

from memfit.data import DataError, extract_pdfs

FRENCH = ("La Conférence des Parties, rappelant sa décision sur l'établissement du groupe de travail spécial de la "
          "plateforme de Durban pour une action renforcée, rappelant également les articles de la Convention, se "
          "félicitant de l'adoption par l'Assemblée générale des Nations Unies de la résolution intitulée "
          "Transformer notre monde, le Programme de développement durable à l'horizon 2030, en particulier son "
          "objectif 13, et de l'adoption du Programme d'action d'Addis-Abeba issu de la troisième Conférence.")


def _french_page() -> str:
    words = FRENCH.split()
    return "\n".join(" ".join(words[i:i + 12]) for i in range(0, len(words), 12))


@pytest.fixture
def good_pdfs(pdf_dir):
    return [write_text_pdf(pdf_dir / f"good-{n}.pdf", [english_page(2 * n), english_page(2 * n + 1)]) for n in range(2)]


def test_pages_keep_their_provenance(pdf_dir, good_pdfs, tmp_path):
    corpus = extract_pdfs(pdf_dir, tmp_path / "cache")
    assert [doc.name for doc in corpus.documents] == ["good-0.pdf", "good-1.pdf"] and corpus.errors == []
    pages = list(corpus.documents[1].iter_pages())
    assert [(page.file, page.number) for page in pages] == [("good-1.pdf", 1), ("good-1.pdf", 2)]
    assert pages[1].text.split("\n")[0] == english_page(3).split("\n")[0]


def test_second_run_reads_the_cache_keyed_by_sha256(pdf_dir, good_pdfs, tmp_path):
    cache = tmp_path / "cache"
    first = extract_pdfs(pdf_dir, cache)
    assert not any(doc.from_cache for doc in first.documents)
    assert sorted(p.stem for p in cache.glob("*.json")) == sorted(doc.sha256 for doc in first.documents)
    second = extract_pdfs(pdf_dir, cache)
    assert all(doc.from_cache for doc in second.documents)
    assert [doc.pages for doc in second.documents] == [doc.pages for doc in first.documents]
    write_text_pdf(good_pdfs[0], [english_page(7)])  # new content, new key: extracted again
    third = extract_pdfs(pdf_dir, cache)
    assert [doc.from_cache for doc in third.documents] == [False, True]


def test_a_corrupt_cache_entry_is_re_extracted(pdf_dir, good_pdfs, tmp_path):
    cache = tmp_path / "cache"
    doc = extract_pdfs(pdf_dir, cache).documents[0]
    (cache / f"{doc.sha256}.json").write_text("{not json")
    again = extract_pdfs(pdf_dir, cache).documents[0]
    assert not again.from_cache and again.pages == doc.pages
    assert json.loads((cache / f"{doc.sha256}.json").read_text())["pages"] == doc.pages


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match=r"does-not-exist does not exist; point --pdf-dir at a folder"):
        extract_pdfs(tmp_path / "does-not-exist")


@pytest.mark.parametrize("contents", [[], ["notes.txt", "figure.png"]])
def test_directory_without_pdfs_is_a_clear_error(pdf_dir, contents):
    for name in contents:
        (pdf_dir / name).write_text("x")
    with pytest.raises(DataError, match=rf"no \.pdf files in {pdf_dir}.*point --pdf-dir"):
        extract_pdfs(pdf_dir)


def test_every_bad_file_is_reported_and_the_good_ones_survive(pdf_dir, good_pdfs, tmp_path):
    truncated = pdf_bytes([english_page(5)])
    (pdf_dir / "truncated.pdf").write_bytes(truncated[: len(truncated) // 2])
    write_encrypted_pdf(pdf_dir / "encrypted.pdf", good_pdfs[0])
    write_blank_pdf(pdf_dir / "scanned.pdf", n_pages=3)
    (pdf_dir / "webpage.pdf").write_bytes(b"<!DOCTYPE html><html><body>Not found</body></html>")
    (pdf_dir / "zero.pdf").write_bytes(b"")
    write_text_pdf(pdf_dir / "french.pdf", [_french_page()])
    corpus = extract_pdfs(pdf_dir, tmp_path / "cache")

    assert [doc.name for doc in corpus.documents] == ["good-0.pdf", "good-1.pdf"]
    issues = {issue.path.name: issue for issue in corpus.errors}
    expected = {"truncated.pdf": ("corrupt", "truncated PDF"), "encrypted.pdf": ("encrypted", "decrypted copy"),
                "scanned.pdf": ("no_text", "run OCR"), "webpage.pdf": ("not_pdf", "HTML page"),
                "zero.pdf": ("empty_file", "0 bytes"), "french.pdf": ("non_english", "keep_non_english")}
    assert {name: issue.kind for name, issue in issues.items()} == {name: kind for name, (kind, _) in expected.items()}
    for name, (_, hint) in expected.items():
        assert hint in issues[name].reason and name in str(issues[name])
    assert [doc.name for doc in corpus.excluded] == ["french.pdf", "scanned.pdf"]


def test_non_english_document_can_be_kept_with_a_warning(pdf_dir, good_pdfs, tmp_path):
    write_text_pdf(pdf_dir / "french.pdf", [_french_page()])
    corpus = extract_pdfs(pdf_dir, tmp_path / "cache", keep_non_english=True)
    assert "french.pdf" in [doc.name for doc in corpus.documents] and corpus.errors == []
    assert [(w.path.name, w.kind) for w in corpus.warnings] == [("french.pdf", "non_english")]


def test_duplicate_files_are_skipped(pdf_dir, good_pdfs, tmp_path):
    (pdf_dir / "copy-of-good-0.pdf").write_bytes(good_pdfs[0].read_bytes())
    corpus = extract_pdfs(pdf_dir, tmp_path / "cache")
    assert [doc.name for doc in corpus.documents] == ["copy-of-good-0.pdf", "good-1.pdf"]
    assert [(e.path.name, e.kind) for e in corpus.errors] == [("good-0.pdf", "duplicate")]
    assert "same content as copy-of-good-0.pdf" in corpus.errors[0].reason


def test_page_and_time_limits(pdf_dir, good_pdfs, tmp_path):
    write_text_pdf(pdf_dir / "long.pdf", [english_page(n) for n in range(6)])
    (pdf_dir / "slow.pdf").write_bytes(pdf_bytes([], compress_repeat=60_000))  # ~3 KB, seconds of pypdf work
    corpus = extract_pdfs(pdf_dir, tmp_path / "cache", max_pages=4, timeout_s=0.5)
    kinds = {e.path.name: e.kind for e in corpus.errors}
    assert kinds == {"long.pdf": "too_many_pages", "slow.pdf": "timeout"}
    assert [doc.name for doc in corpus.documents] == ["good-0.pdf", "good-1.pdf"]
    reasons = {e.path.name: e.reason for e in corpus.errors}
    assert "6 pages is over the 4-page limit" in reasons["long.pdf"]
    assert "longer than 0.5 s" in reasons["slow.pdf"]


def test_file_size_limit(pdf_dir, good_pdfs, tmp_path):
    big = write_text_pdf(pdf_dir / "big.pdf", [english_page(n) for n in range(6)])
    corpus = extract_pdfs(pdf_dir, tmp_path / "cache", max_file_bytes=big.stat().st_size - 1)
    assert [(e.path.name, e.kind) for e in corpus.errors] == [("big.pdf", "too_large")]
    assert "max_file_bytes" in corpus.errors[0].reason and len(corpus.documents) == 2


def test_a_pdf_pypdf_repairs_is_kept_with_its_warning(pdf_dir, tmp_path):
    damaged = re.sub(rb"startxref\n\d+", b"startxref\n99", pdf_bytes([english_page(1)]))  # wrong xref offset
    (pdf_dir / "bad-xref.pdf").write_bytes(damaged)
    corpus = extract_pdfs(pdf_dir, tmp_path / "cache")
    assert [doc.name for doc in corpus.documents] == ["bad-xref.pdf"] and corpus.errors == []
    assert [(w.path.name, w.kind) for w in corpus.warnings] == [("bad-xref.pdf", "pypdf_warning")]
    assert "startxref" in corpus.warnings[0].reason


def test_a_starved_genuine_file_is_kept_and_a_hung_one_is_skipped_without_costing_the_others(pdf_dir, good_pdfs,
                                                                                              tmp_path, monkeypatch):
    # the fuzz run lost intact control PDFs to a wall-clock limit while other jobs saturated the cores; the limit is
    # CPU time now. Sleeping stands in for waiting on a busy CPU (wall time passes, hardly any CPU is used).
    import time

    from memfit.data.pdf import extract, isolation

    real_read = extract.read_page_texts

    def read(job):
        if job[0].name == "good-0.pdf":
            time.sleep(1.5)  # starved: three times timeout_s on the wall clock
        if job[0].name == "hung.pdf":
            time.sleep(60)
        return real_read(job)

    write_text_pdf(pdf_dir / "hung.pdf", [english_page(9)])
    monkeypatch.setattr(extract, "read_page_texts", read)
    monkeypatch.setattr(isolation, "WALL_FACTOR", 4.0)
    corpus = extract_pdfs(pdf_dir, tmp_path / "cache", timeout_s=0.5, workers=2)
    assert [doc.name for doc in corpus.documents] == ["good-0.pdf", "good-1.pdf"]
    (issue,) = corpus.errors
    assert issue.path.name == "hung.pdf" and issue.kind == "timeout"
    assert "wall-clock" in issue.reason and "hung, or the machine is overloaded" in issue.reason
    assert corpus.seconds["good-0.pdf"] >= 1.5 and corpus.seconds["hung.pdf"] >= 2 * 4 * 0.5  # retried alone once
