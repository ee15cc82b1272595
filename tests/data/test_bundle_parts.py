"""The pieces the bundle builder assembles: the storage choice, the statistics table, the loss-token count, the
evaluation sets' labels, the samples refused after tokenising, and the test documents' hashes."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from datasets import Dataset

from memfit.core.loss import IGNORE_INDEX as X
from memfit.data.arrow.records import memory_records
from memfit.data.bundle_parts import (SplitStats, default_num_proc, eval_set, format_split_stats, sample_issues,
                                      target_tokens, test_split_hashes, wants_arrow)
from memfit.data.errors import DataError, FileIssue
from memfit.data.sources import HubSource, Record, TextSource

CHAT = ({"role": "user", "content": "Why?"}, {"role": "assistant", "content": "Warming."})


def test_automatic_choice_follows_input_size_and_hub_sources(tmp_path):
    (tmp_path / "a.txt").write_text("x" * 3000)
    local = [TextSource(path=str(tmp_path))]
    assert not wants_arrow(local) and wants_arrow(local, threshold_mb=0.001)
    assert wants_arrow([HubSource(id="someone/corpus")])
    assert default_num_proc(on_gpu=False) == 1 and 1 <= default_num_proc(on_gpu=True) <= 8


def test_the_loss_counts_labels_after_the_shift():
    train = Dataset.from_dict({"labels": [[1, 2, X, 3], [X, 5], [X, X]]})
    assert target_tokens(train) == 3  # 1 2 3 and 5, less the first label of a block (nothing predicts it)
    assert target_tokens(train, batch_size=1) == 3  # the same across Arrow batch cuts


def test_the_statistics_table_shows_each_split_and_what_the_loss_counts():
    stats = {"train": SplitStats(3, 9, 3000, 700, 11, 690), "test": SplitStats(1, 2, 1000, 240, 4)}
    table = format_split_stats(stats, block_size=64, loss_tokens="assistant")
    lines = table.splitlines()
    assert lines[0].split() == ["split", "docs", "pages", "chars", "chars", "%", "tokens", "blocks"]
    assert lines[2].split() == ["train", "3", "9", "3,000", "75.0%", "700", "11"]
    assert lines[3].split() == ["test", "1", "2", "1,000", "25.0%", "240", "4"]
    assert "blocks of 64 tokens; chat samples are packed whole" in table
    assert table.endswith("the loss counts the assistant's tokens only (train_on_inputs: false).")
    assert format_split_stats({"train": SplitStats(1, 1, 10)}).splitlines()[2].split()[-2:] == ["-", "-"]


def _records_and_tokens():
    records = memory_records([Record("notes", "a.txt", None, "text", text="The ocean."),
                              Record("qa", "qa.jsonl", 1, "chat", messages=CHAT),
                              Record("qa", "qa.jsonl", 2, "chat", messages=CHAT[:1]),
                              Record("qa", "qa.jsonl", 3, "chat", messages=CHAT * 3)])
    tokens = Dataset.from_dict({"input_ids": [[1, 2, 3], [4, 5, 6, 7], [], [8] * 12],
                                "labels": [[], [X, X, 6, 7], [], [X] * 6 + [8] * 6],
                                "n_tokens": [3, 4, 0, 12], "chat_error": [None, None, "no assistant turn", None]})
    return records, tokens


def test_refused_and_too_long_samples_are_named_with_file_and_line():
    records, tokens = _records_and_tokens()
    assert sample_issues(records, tokens, 8, "skip") == [
        FileIssue(Path("qa.jsonl"), "bad-chat", "line 2: no assistant turn"),
        FileIssue(Path("qa.jsonl"), "too-long", "line 3: sample of 12 tokens is longer than the sequence length 8; "
                                                "raise seq_len or shorten the sample")]
    assert [i.kind for i in sample_issues(records, tokens, 16, "skip")] == ["bad-chat"]  # text is never too long
    with pytest.raises(DataError, match="line 3: sample of 12 tokens"):
        sample_issues(records, tokens, 8, "raise")


def test_evaluation_rows_keep_the_label_mask_training_scored():
    records, tokens = _records_and_tokens()
    scored = eval_set(records, tokens, [0, 1], train_on_inputs=False)
    assert scored["name"] == ["notes::a.txt", "qa::qa.jsonl:1"] and scored["n_bytes"][0] == len("The ocean.")
    assert scored["labels"] == [[1, 2, 3], [X, X, 6, 7]]  # text: every token; chat: the answer
    assert eval_set(records, tokens, [1], train_on_inputs=True)["labels"] == [[4, 5, 6, 7]]


def test_the_test_hashes_name_each_test_document_by_its_text():
    documents = Dataset.from_dict({"name": ["b", "a", "c"], "text": ["beta", "alpha", "gamma"],
                                   "split": ["test", "test", "train"]})
    hashes = test_split_hashes(SimpleNamespace(documents=documents))
    assert [name for name, _ in hashes] == ["a", "b"]
    assert hashes[0][1] == "8ed3f6ad685b959ead7022518e1af76cd816f8e8ec7ccdda1ed4018e8f2223f8"  # sha256("alpha")
