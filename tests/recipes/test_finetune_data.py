"""The fine-tune job's datasets: a --pdf-dir run recorded as its PDF source, the choice of data path (`arrow_cache`
true/false; automatic: tests/data/test_bundle_parts.py) giving the job the same data record either way, and the
evaluation sample of the test documents."""
from __future__ import annotations

import contextlib
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
    assert summary == "3 documents from 1 sources, 1 inputs skipped" and not data["arrow"]


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
