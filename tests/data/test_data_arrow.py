"""The Arrow path (storage="arrow" of memfit/data/bundle.py): the same blocks, split and issues as the in-memory path on text +
chat sources, num_proc=2 equal to 1, a rerun served from the cache without tokenising, and training from it."""
from __future__ import annotations

import copy
import json

import pytest

from memfit.data import build_bundle
from memfit.data.sources import TableSource, TextSource
from pdf_factory import english_page

CHATML = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<eos>\n{% endfor %}"
          "{% if add_generation_prompt %}<|assistant|>{% endif %}")
BLOCK = 48


@pytest.fixture(scope="module")
def chat_tokenizer(tiny_tokenizer):
    tokenizer = copy.deepcopy(tiny_tokenizer)
    tokenizer.chat_template = CHATML
    return tokenizer


@pytest.fixture
def sources(tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    for i in range(7):  # lengths from a few tokens to several blocks, so documents straddle block boundaries
        (notes / f"n{i}.txt").write_text(english_page(i, lines=1 + 2 * i)[: 40 + 150 * i])
    rows = [{"messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                          {"role": "assistant", "content": f"It is {2 * i}."}]} for i in range(8)]
    rows.append({"messages": [{"role": "robot", "content": "beep"}, {"role": "assistant", "content": "x"}]})
    rows.append({"messages": [{"role": "user", "content": english_page(1)}, {"role": "assistant", "content": "ok"}]})
    (tmp_path / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + "{not json\n")
    return [TextSource(path=str(notes), weight=1.5), TableSource(path=str(tmp_path / "chat.jsonl"), format="chat")]


def _rows(dataset, columns):
    return [{c: list(r[c]) if isinstance(r[c], list) else r[c] for c in columns} for r in dataset]


def _assert_same_bundle(arrow, arrow_issues, memory, memory_issues):
    assert _rows(arrow.train, ["input_ids", "labels", "position_ids"]) == \
        _rows(memory.train, ["input_ids", "labels", "position_ids"])
    assert _rows(arrow.test, ["name", "input_ids", "n_bytes"]) == _rows(memory.test, ["name", "input_ids", "n_bytes"])
    columns = ["name", "text", "n_pages", "split", "source"]
    assert _rows(arrow.documents, columns) == _rows(memory.documents, columns)
    assert arrow.plan == memory.plan and arrow.stats == memory.stats
    assert list(map(str, arrow_issues)) == list(map(str, memory_issues))


def test_arrow_path_gives_the_in_memory_blocks_split_and_issues(sources, chat_tokenizer, tmp_path):
    memory, memory_issues = build_bundle(sources, chat_tokenizer, block_size=BLOCK, test_fraction=0.25)
    arrow, arrow_issues = build_bundle(sources, chat_tokenizer, storage="arrow", block_size=BLOCK, test_fraction=0.25,
                                       cache_dir=str(tmp_path / "cache"))
    assert {i.kind for i in arrow_issues} == {"bad-json", "bad-chat", "too-long"}
    assert len(arrow.train) > 4 and arrow.stats["train"].target_tokens > 0
    _assert_same_bundle(arrow, arrow_issues, memory, memory_issues)
    assert all(f.startswith(str(tmp_path / "cache")) for f in (c["filename"] for c in arrow.train.cache_files))


def test_num_proc_2_equals_1_and_a_rerun_reads_the_cache(sources, chat_tokenizer, tmp_path, monkeypatch):
    import memfit.data.arrow.tokens as arrow_tokens

    memory, memory_issues = build_bundle(sources, chat_tokenizer, block_size=BLOCK)
    cache = tmp_path / "cache"
    arrow, issues = build_bundle(sources, chat_tokenizer, storage="arrow", block_size=BLOCK, num_proc=2,
                                 cache_dir=str(cache))
    _assert_same_bundle(arrow, issues, memory, memory_issues)
    written = {p: p.stat().st_mtime_ns for p in cache.rglob("*.arrow")}
    assert any(p.name.startswith("tokens-") and "_of_00002" in p.name for p in written)  # two workers tokenised

    calls = []
    monkeypatch.setattr(arrow_tokens, "tokenize", lambda *a: calls.append(a) or [])
    monkeypatch.setattr(arrow_tokens, "tokenize_chat", lambda *a: calls.append(a) or ([], []))
    again, again_issues = build_bundle(sources, chat_tokenizer, storage="arrow", block_size=BLOCK, cache_dir=str(cache))
    assert not calls  # no record was tokenised again
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*.arrow")} == written
    _assert_same_bundle(again, again_issues, memory, memory_issues)


def test_training_reads_blocks_from_the_arrow_dataset(sources, chat_tokenizer, tmp_path):
    import memfit
    from memfit import Stack, TrainConfig
    from _models import tiny_model

    bundle, _ = build_bundle(sources, chat_tokenizer, storage="arrow", block_size=BLOCK,
                             cache_dir=str(tmp_path / "cache"))
    assert bundle.train.cache_files  # memory-mapped from disk, not a table in memory
    model = tiny_model(vocab_size=len(chat_tokenizer), max_position_embeddings=BLOCK)
    stack = Stack.from_spec("lora:dropout=0")
    model = stack.apply_model(model, stack.context("cpu"))
    result = memfit.train(model, stack, bundle.train, TrainConfig(micro_batch=2, max_steps=2, lr=1e-2, warmup=0,
                                                                  progress=False))
    assert len(result.losses) == 2 and all(loss > 0 for loss in result.losses)


@pytest.mark.parametrize("batch_size", [1, 3])
def test_packing_map_equals_pack_documents_and_pack_samples_at_every_batch_cut(tmp_path, batch_size):
    import random

    import numpy as np
    from datasets import Dataset

    from memfit.data.packing import pack_rows
    from memfit.data.packing import pack_documents, pack_samples

    rng = random.Random(batch_size)
    docs = [[rng.randrange(3, 50) for _ in range(rng.randint(1, 20))] for _ in range(30)]
    labels = [[t if rng.random() < 0.5 else -100 for t in d] for d in docs]
    tokens = Dataset.from_dict({"input_ids": docs, "labels": labels, "n_tokens": [len(d) for d in docs]})
    order = np.asarray([rng.randrange(len(docs)) for _ in range(40)])  # repeats, as source weights give
    for block_size in (2, 7, 20):  # documents straddle blocks, and blocks straddle the map's batches
        text = pack_rows(tokens, order, False, block_size, 1, 0, tmp_path, f"t{block_size}", batch_size=batch_size)
        assert text.to_dict() == pack_documents([docs[i] for i in order], block_size, 1, 0)
    for block_size in (20, 33):  # whole samples (at most 20 tokens) per block
        chat = pack_rows(tokens, order, True, block_size, 1, 0, tmp_path, f"c{block_size}", batch_size=batch_size)
        assert chat.to_dict() == pack_samples([(docs[i], labels[i]) for i in order], block_size, 0)
    for block_size in (2, 7, 20):  # unpacked: a document's blocks may straddle the map's batches too
        text = pack_rows(tokens, order, False, block_size, 1, 0, tmp_path, f"u{block_size}", batch_size=batch_size,
                         packing=False)
        assert text.to_dict() == pack_documents([docs[i] for i in order], block_size, 1, 0, packing=False)
        chat = pack_rows(tokens, order, True, 20, 1, 0, tmp_path, "uc", batch_size=batch_size, packing=False)
        assert chat.to_dict() == pack_samples([(docs[i], labels[i]) for i in order], 20, 0, packing=False)


def test_a_refused_input_is_the_users_one_line_error_not_a_generation_traceback(tmp_path, chat_tokenizer):
    from memfit.data import DataError

    (tmp_path / "t.jsonl").write_text('{"text": "fine"}\n{broken\n')
    with pytest.raises(DataError, match=r"t.jsonl: line 2: not a JSON object"):
        build_bundle([TableSource(path=str(tmp_path / "t.jsonl"), on_error="raise")], chat_tokenizer, storage="arrow",
                     cache_dir=str(tmp_path / "cache"))
