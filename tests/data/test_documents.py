"""build_datasets (documents.py): document-level split, packed train blocks, whole-document test rows, statistics."""
from __future__ import annotations

import pytest
from pdf_factory import english_page

from memfit.data import DataError, build_datasets, split_documents

DOCS = {f"doc-{n:02d}.pdf": english_page(n) + ("\nWarming of 1.5 °C." if n % 2 else "") for n in range(10)}


def _build(tokenizer, docs=DOCS, **kwargs):
    return build_datasets(docs, tokenizer, block_size=kwargs.pop("block_size", 64), verbose=False, **kwargs)


def test_split_is_by_document_and_deterministic(tiny_tokenizer):
    bundle = _build(tiny_tokenizer, seed=3)
    plan = bundle.plan
    assert sorted(plan.train + plan.test) == sorted(DOCS) and not set(plan.train) & set(plan.test)
    assert len(plan.test) == 2  # round(0.2 * 10)
    assert _build(tiny_tokenizer, seed=3).plan == plan
    assert split_documents(list(reversed(DOCS)), seed=3) == plan  # listing order does not matter


def test_the_validation_split_is_whole_documents_of_its_own(tiny_tokenizer):
    bundle = _build(tiny_tokenizer, validation_fraction=0.1)
    plan = bundle.plan
    assert (len(plan.train), len(plan.validation), len(plan.test)) == (7, 1, 2)
    assert set(bundle.validation["name"]) == set(plan.validation) and not set(plan.validation) & set(plan.test)
    assert bundle.stats["validation"].documents == 1
    assert _build(tiny_tokenizer).validation is None


def test_too_few_documents_is_a_clear_error(tiny_tokenizer):
    with pytest.raises(DataError, match=r"1 usable documents cannot be split .* add PDFs"):
        _build(tiny_tokenizer, docs={"only.pdf": english_page(0)})


def test_train_blocks_are_the_train_documents_packed(tiny_tokenizer):
    bundle = _build(tiny_tokenizer)
    train = bundle.train
    assert train.column_names == ["input_ids", "labels", "position_ids"]
    assert all(len(row[c]) == 64 for row in train for c in train.column_names)
    eos, pad = tiny_tokenizer.eos_token_id, tiny_tokenizer.pad_token_id
    expected = []
    for name in bundle.plan.train:
        expected += tiny_tokenizer(DOCS[name], add_special_tokens=False)["input_ids"] + [eos]
    stream = sum(train["input_ids"], [])
    assert stream[: len(expected)] == expected and set(stream[len(expected):]) <= {pad}
    assert bundle.stats["train"].blocks == len(train) == -(-len(expected) // 64)


def test_test_rows_are_whole_documents_with_byte_counts(tiny_tokenizer):
    bundle = _build(tiny_tokenizer)
    test = bundle.test
    assert test.column_names == ["name", "input_ids", "n_bytes", "labels"] and test["name"] == bundle.plan.test
    for row in test:
        text = DOCS[row["name"]]
        assert row["input_ids"] == tiny_tokenizer(text, add_special_tokens=False)["input_ids"]
        assert row["labels"] == row["input_ids"]  # text: training scores every token, so evaluation does too
        assert row["n_bytes"] == len(text.encode("utf-8"))
    assert any(len(DOCS[name].encode()) > len(DOCS[name]) for name in DOCS)  # "°" is two bytes


def test_statistics_are_returned_and_printed(tiny_tokenizer, capsys):
    bundle = build_datasets(DOCS, tiny_tokenizer, block_size=64)
    printed = capsys.readouterr().out
    stats = bundle.stats
    assert set(stats) == {"train", "test"}
    assert stats["train"].documents + stats["test"].documents == 10
    assert stats["train"].pages == 8 and stats["test"].characters == sum(len(DOCS[n]) for n in bundle.plan.test)
    assert stats["test"].tokens == sum(map(len, bundle.test["input_ids"]))
    assert 0 < stats["train"].target_tokens < stats["train"].blocks * 64
    assert printed.strip() == bundle.format_stats().strip() and "train" in printed and "tokens" in printed


def test_tokenizer_without_eos_is_rejected(tiny_tokenizer):
    tokenizer = tiny_tokenizer.__class__(tokenizer_object=tiny_tokenizer.backend_tokenizer)
    with pytest.raises(DataError, match="eos_token"):
        _build(tokenizer)

