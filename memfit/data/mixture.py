"""Several sources -> one document-level split across all of them -> packed training blocks + whole-document test set.

Plain text documents are packed as `pack_documents` does (EOS between documents); chat and prompt/completion
samples are packed whole by `pack_samples`, with labels only on assistant tokens. Per-source weights repeat train
documents (integer part) and add a deterministic subset for the fraction; the test split is never weighted.
"""
from __future__ import annotations

import hashlib
import logging
import math
from typing import Any, Literal, Optional

from datasets import Dataset, concatenate_datasets

from memfit.data.chat import pack_samples, tokenize_chat
from memfit.data.bundle import DataBundle, SplitStats, _load_tokenizer, tokenize
from memfit.data.errors import DataError, FileIssue
from memfit.data.packing import IGNORE_INDEX, pack_documents
from memfit.data.readers import load_records
from memfit.data.sources import Record
from memfit.data.split import split_documents

log = logging.getLogger(__name__)


def _weighted(names: list[str], by_name: dict[str, Record], weights: dict[str, float]) -> list[str]:
    out = []
    for name in names:
        weight = weights.get(by_name[name].source, 1.0)
        copies = int(weight)
        fraction = weight - copies  # a stable per-document draw, so the subset depends on names only
        draw = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) / 16**8
        out += [name] * (copies + (draw < fraction))
    return out


Encoded = tuple[list[int], Optional[list[int]]]  # input_ids, and labels for chat samples (None: plain text)


def _encode(tokenizer: Any, records: list[Record], block_size: int, on_too_long: str,
            issues: list[FileIssue]) -> dict[str, Encoded]:
    """Every usable record's tokens, before the split, so a bad sample never takes a place in train or test."""
    plain = [r for r in records if r.messages is None]
    encoded: dict[str, Encoded] = {r.name: (ids, None) for r, ids in zip(plain, tokenize(tokenizer, [r.text for r in plain]))}
    for record in (r for r in records if r.messages is not None):
        try:
            ids, labels = tokenize_chat(tokenizer, record.messages)
        except DataError as exc:
            if "no chat template" in str(exc):  # the tokenizer, not this sample, is wrong
                raise
            issues.append(FileIssue(_path(record), "bad-chat", f"{_where(record)}{exc}"))
            continue
        if len(ids) > block_size:
            issue = FileIssue(_path(record), "too-long", f"{_where(record)}sample of {len(ids)} tokens is longer "
                                                         f"than the sequence length {block_size}; raise seq_len "
                                                         "or shorten the sample")
            if on_too_long == "raise":
                raise DataError(str(issue))
            issues.append(issue)
            continue
        encoded[record.name] = (ids, labels)
    return encoded


def _path(record: Record):
    from pathlib import Path

    return Path(record.file)


def _where(record: Record) -> str:
    return f"line {record.line}: " if record.line is not None else ""


def build_source_datasets(sources: list[Any], tokenizer: Any, *, block_size: int = 512, test_fraction: float = 0.2,
                          min_test_docs: int = 1, seed: int = 0, text_cache: Optional[str] = None,
                          on_too_long: Literal["skip", "raise"] = "skip") -> tuple[DataBundle, list[FileIssue]]:
    """The `DataBundle` of all `sources` and the issues of every skipped file, line or sample."""
    tokenizer = _load_tokenizer(tokenizer)
    eos = tokenizer.eos_token_id
    if eos is None:
        raise DataError("the tokenizer has no eos_token, which packing needs; set tokenizer.eos_token")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    records, issues = load_records(sources, text_cache)
    if not records:
        raise DataError("the sources hold no usable documents:\n" + "\n".join(map(str, issues)))
    by_name = {r.name: r for r in records}
    if len(by_name) != len(records):
        raise DataError("two sources give documents of the same name; give the sources distinct 'name's")
    encoded = _encode(tokenizer, records, block_size, on_too_long, issues)
    plan = split_documents(sorted(encoded), test_fraction=test_fraction, min_test_docs=min_test_docs, seed=seed)
    train_names = _weighted(plan.train, by_name, {src.label: src.weight for src in sources})
    texts = [encoded[n][0] for n in train_names if encoded[n][1] is None]
    samples = [encoded[n] for n in train_names if encoded[n][1] is not None]
    parts = [Dataset.from_dict(pack_documents(texts, block_size, eos, pad))] if texts else []
    parts += [Dataset.from_dict(pack_samples(samples, block_size, pad))] if samples else []
    train = concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    train_records = [by_name[n] for n in train_names]
    records = [r for r in records if r.name in encoded]

    test_records = [by_name[n] for n in plan.test]
    test_ids = [encoded[r.name][0] for r in test_records]
    test = Dataset.from_dict({"name": [r.name for r in test_records], "input_ids": test_ids,
                              "n_bytes": [len(r.content().encode("utf-8")) for r in test_records]})
    documents = Dataset.from_dict({"name": [r.name for r in records], "text": [r.content() for r in records],
                                   "n_pages": [1] * len(records), "split": [plan.of(r.name) for r in records],
                                   "source": [r.source for r in records]})
    targets = sum(label != IGNORE_INDEX for block in train["labels"] for label in block[1:])
    train_tokens = sum(map(len, texts)) + sum(len(ids) for ids, _ in samples)
    stats = {"train": SplitStats(len(plan.train), len(plan.train), sum(len(r.content()) for r in train_records),
                                 train_tokens, len(train), targets),
             "test": SplitStats(len(test_records), len(test_records), sum(len(r.content()) for r in test_records),
                                sum(map(len, test_ids)), math.ceil(sum(map(len, test_ids)) / block_size))}
    for issue in issues:
        log.warning("skipped %s", issue)
    return DataBundle(train=train, test=test, validation=None, documents=documents, plan=plan,
                      block_size=block_size, eos_token_id=eos, stats=stats), issues


def test_split_hashes(bundle: DataBundle) -> list[tuple[str, str]]:
    """(name, sha256 of the text) of every test document, sorted by name: what a run records so a later run can
    prove it evaluates on the same held-out documents."""
    rows = bundle.documents.filter(lambda row: row["split"] == "test")
    return sorted((row["name"], hashlib.sha256(row["text"].encode("utf-8")).hexdigest()) for row in rows)


test_split_hashes.__test__ = False  # its name starts with "test": keep pytest from collecting it
