"""The fine-tune job's datasets: a --pdf-dir run recorded as its PDF source, the choice of data path (`arrow_cache`
true/false; automatic: tests/data/test_bundle_parts.py) giving the job the same data record either way, and the
evaluation sample of the test documents."""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from types import SimpleNamespace

from pdf_factory import english_page, write_text_pdf  # tests/data (tests/recipes/conftest.py)

from memfit.recipes.finetune import FinetuneConfig
from memfit.recipes.finetune_data import finetune_datasets, sample_documents

STATE = SimpleNamespace(main_process_first=contextlib.nullcontext, device=SimpleNamespace(type="cpu"))


def test_a_pdf_dir_run_records_its_pdf_source_like_any_source(tmp_path, monkeypatch, tiny_tokenizer):
    monkeypatch.setenv("MEMFIT_CACHE", str(tmp_path / "cache"))
    papers = tmp_path / "papers"
    papers.mkdir()
    for n in range(3):
        write_text_pdf(papers / f"p{n}.pdf", [english_page(n)])
    (papers / "NOTICE").write_text("licence")
    cfg = FinetuneConfig.model_validate({"pdf_dir": str(papers), "seq_len": 32})
    bundle, data, summary = finetune_datasets(cfg.data_request(), tiny_tokenizer, STATE)
    assert data["sources"] == [cfg.data.sources[0].model_dump()] and data["sources"][0]["path"] == str(papers)
    assert data["documents"] == 3 and data["per_source"] == {str(papers): {"train": 2, "test": 1}}
    assert len(data["skipped"]) == 1 and data["skipped"][0].startswith(f"{papers / 'NOTICE'}: not read")
    assert sorted(data["test_sha256"]) == data["test_documents"] == bundle.plan.test
    assert all(name.startswith(f"{papers}::p") for name in data["test_documents"])  # <source>::<file>
    assert summary.splitlines()[0] == "3 documents from 1 sources, 1 inputs skipped" and not data["arrow"]
    assert summary.splitlines()[1] == f"  {data['skipped'][0]}"  # each skipped input named in the log


def test_both_paths_give_the_job_the_same_data_record(tmp_path, monkeypatch, tiny_tokenizer):
    monkeypatch.setenv("MEMFIT_CACHE", str(tmp_path / "cache"))
    for i in range(6):
        (tmp_path / f"n{i}.txt").write_text(english_page(i, lines=2 + i))
    source = [{"kind": "text", "path": str(tmp_path), "name": "notes"}]
    records = {}
    for arrow in (False, True):
        cfg = FinetuneConfig.model_validate({"sources": source, "seq_len": 32, "arrow_cache": arrow})
        bundle, data, summary = finetune_datasets(cfg.data_request(), tiny_tokenizer, STATE)
        assert data.pop("arrow") is arrow and ("Arrow cache" in summary) is arrow
        records[arrow] = data
    assert records[True] == records[False]
    assert bundle.train.cache_files and str(tmp_path / "cache" / "arrow") in bundle.train.cache_files[0]["filename"]


def test_the_jobs_train_on_inputs_setting_reaches_the_bundle(tmp_path, monkeypatch, tiny_tokenizer):
    import copy

    from test_bundle import CHATML, _chat_sources  # tests/data

    monkeypatch.setenv("MEMFIT_CACHE", str(tmp_path / "cache"))
    tokenizer = copy.deepcopy(tiny_tokenizer)
    tokenizer.chat_template = CHATML
    sources = [s.model_dump() for s in _chat_sources(tmp_path)]
    counted = {}
    for every in (False, True):
        cfg = FinetuneConfig.model_validate({"sources": sources, "seq_len": 64, "train_on_inputs": every})
        _, data, _ = finetune_datasets(cfg.data_request(), tokenizer, STATE)
        counted[every] = data["loss_tokens"]
    assert counted == {False: "assistant", True: "all"}


def test_a_capped_evaluation_samples_evenly_spaced_pieces_of_every_document(tiny_tokenizer):
    docs = [{"name": "a", "input_ids": list(range(100)), "n_bytes": 1},
            {"name": "b", "input_ids": list(range(40)), "labels": [-100] * 20 + list(range(20)), "n_bytes": 1}]
    whole, info = sample_documents(docs, tiny_tokenizer, None, 16)
    assert whole == docs and info == {"sampled": False, "test_tokens": 140, "scored_documents": 2}
    pieces, info = sample_documents(docs, tiny_tokenizer, 80, 16)
    assert info["sampled"] and info["pieces"] == 5 and info["piece_tokens"] == 16
    # 10 possible starts (7 in a, 3 in b), every second one: spread over both documents, in order
    assert [p["name"] for p in pieces] == ["a@0", "a@32", "a@64", "a@96", "b@16"]
    assert [len(p["input_ids"]) for p in pieces] == [16, 16, 16, 4, 16]
    assert pieces[4]["labels"] == [-100] * 4 + list(range(12))  # the label mask training scored travels along
    assert "labels" not in pieces[0]  # plain text: scored on every token


def _mixed_folder(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for n in range(2):
        write_text_pdf(folder / f"p{n}.pdf", [english_page(seed=10 * n + page) for page in range(2)])
    (folder / "notes.txt").write_text(english_page(seed=30))
    (folder / "readme.md").write_text("# Notes\n\n" + english_page(seed=31))
    (folder / "rows.jsonl").write_text("".join(json.dumps({"text": english_page(seed=40 + n)}) + "\n"
                                               for n in range(2)))  # a table: one document per row
    return folder


def test_a_mixed_pdf_dir_names_each_file_it_does_not_read_and_how_to_include_it(tmp_path, monkeypatch,
                                                                                tiny_tokenizer):
    monkeypatch.setenv("MEMFIT_CACHE", str(tmp_path / "cache"))
    mixed = _mixed_folder(tmp_path)
    cfg = FinetuneConfig.model_validate({"pdf_dir": str(mixed), "seq_len": 32, "test_fraction": 0.34})
    _, data, summary = finetune_datasets(cfg.data_request(), tiny_tokenizer, STATE)
    assert data["documents"] == 2
    for name, kind in (("notes.txt", "text"), ("readme.md", "text"), ("rows.jsonl", "table")):
        line = next(line for line in summary.splitlines() if f"{name}:" in line)  # named in the run's log
        assert f"{{kind: {kind}, path: {mixed / name}}}" in line
        assert f"{{kind: pdf, path: {mixed}, read_other_files: true}}" in line
        assert any(name in entry for entry in data["skipped"])


def test_read_other_files_trains_on_every_file_as_its_kind(tmp_path, monkeypatch, tiny_tokenizer):
    monkeypatch.setenv("MEMFIT_CACHE", str(tmp_path / "cache"))
    mixed = _mixed_folder(tmp_path)
    cfg = FinetuneConfig.model_validate({"sources": [{"kind": "pdf", "path": str(mixed), "read_other_files": True}],
                                         "seq_len": 32, "test_fraction": 0.34})
    bundle, data, summary = finetune_datasets(cfg.data_request(), tiny_tokenizer, STATE)
    files = sorted(Path(name.split("::")[1]).name for name in bundle.documents["name"])  # "source::file[:row]"
    assert files == ["notes.txt", "p0.pdf", "p1.pdf", "readme.md", "rows.jsonl:1", "rows.jsonl:2"], files
    assert data["documents"] == 6 and data["skipped"] == [], summary
