"""A finished run read back: its test documents rebuilt from the recorded sources and checked against the recorded
hashes, including runs written before `pdf_dir` became a PDF source (documents named by file name alone)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from pdf_factory import english_page, write_text_pdf  # tests/data (tests/recipes/conftest.py)

from memfit.data import extract_pdfs
from memfit.recipes.saved_run import RunError, read_run, test_documents


@pytest.fixture
def papers(tmp_path) -> Path:
    folder = tmp_path / "papers"
    folder.mkdir()
    for n, name in enumerate(("land.pdf", "ocean.pdf")):
        write_text_pdf(folder / name, [english_page(2 * n), english_page(2 * n + 1)])
    return folder


def _clean_text_sha256(folder: Path, tmp_path: Path) -> dict[str, str]:
    """{file name: sha256 of its cleaned text}: what every version hashed for a PDF's test entry."""
    corpus = extract_pdfs(folder, tmp_path / "hash-cache")
    return {d.name: hashlib.sha256(d.clean_text().encode("utf-8")).hexdigest() for d in corpus.documents}


def _write_run(run_dir: Path, config_data: dict, data: dict) -> Path:
    run_dir.mkdir()
    record = {"config": {"data": config_data, "stack": "lora"}, "stack": "lora", "data": data}
    (run_dir / "results.json").write_text(json.dumps(record))
    return run_dir


def test_a_run_of_the_previous_version_with_pdf_dir_is_still_evaluable(papers, tmp_path, monkeypatch,
                                                                      tiny_tokenizer):
    monkeypatch.setenv("MEMFIT_CACHE", str(tmp_path / "cache"))
    hashes = _clean_text_sha256(papers, tmp_path)
    # what the legacy branch wrote: pdf_dir beside an empty sources list, plain file names as document names
    run = read_run(_write_run(tmp_path / "old-run", {"pdf_dir": str(papers), "sources": []},
                              {"pdf_dir": str(papers), "skipped_files": [], "text_from_cache": 0,
                               "test_documents": ["ocean.pdf"], "test_sha256": {"ocean.pdf": hashes["ocean.pdf"]}}))
    assert [s.path for s in run.config.data.sources] == [str(papers)]  # read as the one PDF source
    (row,) = test_documents(run, tiny_tokenizer)
    assert row["name"] == "ocean.pdf" and row["input_ids"] and row["n_bytes"] > 0

    write_text_pdf(papers / "ocean.pdf", [english_page(7)])  # changed since the run: refused
    with pytest.raises(RunError, match="'ocean.pdf' changed since run"):
        test_documents(run, tiny_tokenizer)


def test_a_run_of_this_version_names_documents_by_source_and_file(papers, tmp_path, monkeypatch, tiny_tokenizer):
    monkeypatch.setenv("MEMFIT_CACHE", str(tmp_path / "cache"))
    name = f"{papers}::land.pdf"
    source = {"kind": "pdf", "path": str(papers)}
    run = read_run(_write_run(tmp_path / "run", {"sources": [source]},
                              {"sources": [source], "test_documents": [name],
                               "test_sha256": {name: _clean_text_sha256(papers, tmp_path)["land.pdf"]}}))
    assert [row["name"] for row in test_documents(run, tiny_tokenizer)] == [name]
    bare = read_run(_write_run(tmp_path / "bare", {"sources": [source]},
                               {"sources": [source], "test_sha256": {"land.pdf": "0" * 64}}))
    with pytest.raises(RunError, match="'land.pdf' of run .* is missing from"):  # a bare name is no name of today's
        test_documents(bare, tiny_tokenizer)


def test_a_record_naming_the_data_twice_is_refused_in_one_line(papers, tmp_path):
    other = {"kind": "text", "path": str(tmp_path)}
    with pytest.raises(RunError, match="does not hold a complete run record") as refusal:
        read_run(_write_run(tmp_path / "both", {"pdf_dir": str(papers), "sources": [other]},
                            {"pdf_dir": str(papers), "test_sha256": {"x": "0" * 64}}))
    assert "\n" not in str(refusal.value)
