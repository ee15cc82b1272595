"""Sources larger than memory -> the same `DataBundle` as `build_source_datasets`, built through datasets' Arrow cache.

    bundle, issues = build_arrow_datasets(sources, tokenizer, block_size=512, num_proc=8)

Records are written to Arrow by a generator (arrow_records.py), tokenised by a batched `map` with `num_proc` and a
progress bar (arrow_tokens.py) and packed by a second batched `map` (arrow_blocks.py); every step is a
memory-mapped cache file under `$MEMFIT_CACHE/arrow`, reused by a rerun. `bundle.train` is a memory-mapped
map-style dataset: the loop's DataLoader reads the blocks it samples, nothing more. What is held in memory is one
small entry per document (its name, source and token count), which the document-level split needs.

The split, the source weights, the skipped-input rules and the block layout are those of the in-memory path
(memfit/data/mixture.py), so both give the same blocks (tests/data/test_data_arrow.py checks it).
"""
from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any, Literal, NamedTuple, Optional

import numpy as np
import pyarrow.compute as pc
from datasets import Dataset, concatenate_datasets

from memfit.data.arrow.blocks import pack_arrow
from memfit.data.arrow.integrity import build_lock
from memfit.data.arrow.records import content_hash, default_arrow_dir, file_stamps, record_issues, write_records
from memfit.data.arrow.tokens import tokenise_records
from memfit.data.bundle import DataBundle, SplitStats, _load_tokenizer
from memfit.data.errors import DataError, FileIssue
from memfit.data.mixture import _weighted
from memfit.data.packing import IGNORE_INDEX
from memfit.data.split import split_documents

log = logging.getLogger(__name__)
ARROW_THRESHOLD_MB = 256  # input files above this take the Arrow path when the user did not choose


def wants_arrow(sources: list[Any], threshold_mb: float = ARROW_THRESHOLD_MB) -> bool:
    """The automatic choice: a Hub source (size unknown until read), or input files larger than `threshold_mb`."""
    if any(not getattr(src, "path", None) for src in sources):
        return True
    total = sum(size for src in sources for _, size, _ in file_stamps(src.path))
    return total > threshold_mb * 2**20


def default_num_proc(on_gpu: bool) -> int:
    """Tokenising workers: 1 on a CPU machine (the cores train), else up to 8 of the host's cores."""
    return min(8, os.cpu_count() or 1) if on_gpu else 1


class _Origin(NamedTuple):  # what `_weighted` reads of a record: its source, without holding the record's text
    source: str


def _column(data: Dataset, name: str) -> list:
    return data.data.column(name).to_pylist()


def _sample_issues(records: Dataset, tokens: Dataset, block_size: int, on_too_long: str) -> list[FileIssue]:
    """Chat samples the tokeniser refused, or too long for a block: named with file and line like mixture.py."""
    issues = []
    bad = pc.or_(pc.is_valid(tokens.data.column("chat_error")),
                 pc.and_(records.data.column("chat"), pc.greater(tokens.data.column("n_tokens"), block_size)))
    for i in pc.indices_nonzero(bad).to_pylist():
        row, token_row = records[i], tokens.select_columns(["n_tokens", "chat_error"])[i]
        where = f"line {row['line']}: " if row["line"] is not None else ""
        if token_row["chat_error"] is not None:
            issues.append(FileIssue(Path(row["file"]), "bad-chat", f"{where}{token_row['chat_error']}"))
            continue
        issue = FileIssue(Path(row["file"]), "too-long", f"{where}sample of {token_row['n_tokens']} tokens is longer "
                                                         f"than the sequence length {block_size}; raise seq_len or "
                                                         "shorten the sample")
        if on_too_long == "raise":
            raise DataError(str(issue))
        issues.append(issue)
    return issues


def _target_tokens(train: Dataset, batch_size: int = 4096) -> int:
    """labels != -100 that the shifted loss uses (a block's first label never is), in Arrow batches."""
    count = 0
    for batch in train.select_columns(["labels"]).with_format("arrow").iter(batch_size=batch_size):
        labels = batch.column("labels")
        count += pc.sum(pc.not_equal(pc.list_flatten(labels), IGNORE_INDEX)).as_py() or 0
        count -= pc.sum(pc.not_equal(pc.list_element(labels, 0), IGNORE_INDEX)).as_py() or 0
    return count


def build_arrow_datasets(sources: list[Any], tokenizer: Any, *, block_size: int = 512, test_fraction: float = 0.2,
                         min_test_docs: int = 1, seed: int = 0, text_cache: Optional[str] = None,
                         on_too_long: Literal["skip", "raise"] = "skip", num_proc: int = 1,
                         cache_dir: Optional[str] = None) -> tuple[DataBundle, list[FileIssue]]:
    """The `DataBundle` of all `sources` (train memory-mapped) and the issues of every skipped file, line or sample."""
    tokenizer = _load_tokenizer(tokenizer)
    eos = tokenizer.eos_token_id
    if eos is None:
        raise DataError("the tokenizer has no eos_token, which packing needs; set tokenizer.eos_token")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    cache = Path(cache_dir or default_arrow_dir())
    with build_lock(cache):
        return _build(sources, tokenizer, cache, block_size, test_fraction, min_test_docs, seed, text_cache,
                      on_too_long, num_proc)


def _build(sources, tokenizer, cache, block_size, test_fraction, min_test_docs, seed, text_cache, on_too_long,
           num_proc) -> tuple[DataBundle, list[FileIssue]]:
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    records = write_records(sources, text_cache, cache)
    issues = record_issues(records)
    names, chat = _column(records, "name"), _column(records, "chat")
    record_rows = [i for i, name in enumerate(names) if name is not None]
    if not record_rows:
        raise DataError("the sources hold no usable documents:\n" + "\n".join(map(str, issues)))
    if len({names[i] for i in record_rows}) != len(record_rows):
        raise DataError("two sources give documents of the same name; give the sources distinct 'name's")
    tokens, tokens_key = tokenise_records(records, tokenizer, content_hash(records), cache / "tokens", num_proc)
    issues += _sample_issues(records, tokens, block_size, on_too_long)
    n_tokens, errors = _column(tokens, "n_tokens"), _column(tokens, "chat_error")
    kept = [i for i in record_rows if not chat[i] or (errors[i] is None and n_tokens[i] <= block_size)]
    row_of = {names[i]: i for i in kept}
    plan = split_documents(sorted(row_of), test_fraction=test_fraction, min_test_docs=min_test_docs, seed=seed)
    sources_of = _column(records, "source")
    train_rows = [row_of[n] for n in _weighted(plan.train, {n: _Origin(sources_of[row_of[n]]) for n in plan.train},
                                               {src.label: src.weight for src in sources})]

    text_order = np.asarray([i for i in train_rows if not chat[i] and n_tokens[i]], dtype=np.int64)
    chat_order = np.asarray([i for i in train_rows if chat[i]], dtype=np.int64)
    parts = [pack_arrow(tokens, order, is_chat, block_size, eos, pad, cache / "blocks", tokens_key, num_proc)
             for order, is_chat in ((text_order, False), (chat_order, True)) if len(order)]
    train = concatenate_datasets(parts) if len(parts) > 1 else parts[0]

    # test rows and documents: columns of the two memory-mapped files side by side (axis=1 copies nothing)
    test_rows = [row_of[n] for n in plan.test]
    test = concatenate_datasets([records.select_columns(["name"]), tokens.select_columns(["input_ids"]),
                                 records.select_columns(["n_bytes"])], axis=1).select(test_rows)
    split_of = {name: split for split in ("train", "test") for name in getattr(plan, split)}
    extra = Dataset.from_dict({"n_pages": [1] * len(names), "split": [split_of.get(n) for n in names]})
    documents = concatenate_datasets([records.select_columns(["name", "text"]), extra,
                                      records.select_columns(["source"])], axis=1).select(kept)

    chars = _column(records, "n_chars")
    test_tokens = sum(n_tokens[i] for i in test_rows)
    stats = {"train": SplitStats(len(plan.train), len(plan.train), sum(chars[i] for i in train_rows),
                                 sum(n_tokens[i] for i in train_rows), len(train), _target_tokens(train)),
             "test": SplitStats(len(test_rows), len(test_rows), sum(chars[i] for i in test_rows), test_tokens,
                                math.ceil(test_tokens / block_size))}
    for issue in issues:
        log.warning("skipped %s", issue)
    return DataBundle(train=train, test=test, validation=None, documents=documents, plan=plan,
                      block_size=block_size, eos_token_id=eos, stats=stats), issues
