"""The fine-tune job's choice of data path: `arrow_cache` true/false (automatic: test_bundle_parts.py), and both
paths give the job the same data record (split, hashes, statistics)."""
from __future__ import annotations

import contextlib
from types import SimpleNamespace

from memfit.recipes.finetune import FinetuneConfig
from memfit.recipes.finetune_data import finetune_datasets
from pdf_factory import english_page

STATE = SimpleNamespace(main_process_first=contextlib.nullcontext, device=SimpleNamespace(type="cpu"))


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

    from test_bundle import CHATML, _chat_sources

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
