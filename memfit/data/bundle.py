"""The one bundle builder: records -> tokens -> document-level split -> packed train blocks + whole-document
evaluation sets, with pluggable storage:

    bundle, issues = build_bundle(sources, tokenizer, block_size=512)                    # in memory
    bundle, issues = build_bundle(sources, tokenizer, storage="arrow", num_proc=8)       # larger than memory

Both storages run the same steps on `datasets.Dataset`s: record rows (arrow/records.py), token rows
(arrow/tokens.py), blocks (packing.py). In memory they are tables in RAM; with `storage="arrow"` every step is a
memory-mapped cache file under `$MEMFIT_CACHE/arrow`, verified by sha256 and reused by a rerun, and `bundle.train`
is read block by block by the loop's DataLoader. What is held in memory is one small entry per document (its name,
source and token count), which the document-level split needs. The same inputs give the same bundle either way.

Per-source weights repeat train documents (integer part) and add a deterministic subset for the fraction; the
test/validation splits are never weighted. Chat and prompt/completion samples are labelled on the assistant's
tokens only unless `train_on_inputs`; `bundle.loss_tokens` says what the loss counts.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal, NamedTuple, Optional

import numpy as np
from datasets import Dataset, concatenate_datasets

from memfit.data.arrow.cache_files import build_lock
from memfit.data.arrow.records import content_hash, default_arrow_dir, memory_records, record_issues, write_records
from memfit.data.arrow.tokens import as_tokenizer, tokenise_records
from memfit.data.bundle_parts import DataBundle, LossTokens, SplitStats, column, eval_set, sample_issues, \
    target_tokens
from memfit.data.errors import DataError, FileIssue
from memfit.data.packing import pack_rows
from memfit.data.readers import iter_records
from memfit.data.split import split_documents

Storage = Literal["memory", "arrow"]


class _Options(NamedTuple):
    block_size: int
    test_fraction: float
    min_test_docs: int
    validation_fraction: float
    min_validation_docs: int
    seed: int
    on_too_long: str
    train_on_inputs: bool
    num_proc: int
    packing: bool


def build_bundle(sources: Optional[list[Any]], tokenizer: Any, *, storage: Storage = "memory", items: Any = None,
                 block_size: int = 512, test_fraction: float = 0.2, min_test_docs: int = 1,
                 validation_fraction: float = 0.0, min_validation_docs: int = 1, seed: int = 0,
                 text_cache: Optional[str] = None, on_too_long: Literal["skip", "raise"] = "skip",
                 train_on_inputs: bool = False, num_proc: int = 1, packing: bool = True,
                 cache_dir: Optional[str] = None) -> tuple[DataBundle, list[FileIssue]]:
    """The `DataBundle` of `sources` (or of ready `items`: `Record`s and `FileIssue`s, in memory only) and the
    issues of every skipped file, line or sample. `tokenizer` is an HF tokenizer or a path for `AutoTokenizer`.
    `packing` False: one document or chat sample per train block, padded (memfit/data/packing.py)."""
    tokenizer = as_tokenizer(tokenizer)
    if tokenizer.eos_token_id is None:
        raise DataError("the tokenizer has no eos_token, which packing needs between documents; set "
                        "tokenizer.eos_token (e.g. to '</s>') before building the datasets.")
    options = _Options(block_size, test_fraction, min_test_docs, validation_fraction, min_validation_docs, seed,
                       on_too_long, train_on_inputs, num_proc, packing)
    weights = {src.label: src.weight for src in sources or []}
    if storage == "memory":
        records = memory_records(items if items is not None else iter_records(sources, text_cache))
        return _build(records, tokenizer, weights, None, options)
    if items is not None:
        raise ValueError("ready items are built in memory; give sources for the Arrow storage")
    cache = Path(cache_dir or default_arrow_dir())
    with build_lock(cache):
        return _build(write_records(sources, text_cache, cache), tokenizer, weights, cache, options)


def weighted(names: list[str], source_of: dict[str, str], weights: dict[str, float]) -> list[str]:
    out = []
    for name in names:
        weight = weights.get(source_of[name], 1.0)
        copies = int(weight)
        fraction = weight - copies  # a stable per-document draw, so the subset depends on names only
        draw = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) / 16**8
        out += [name] * (copies + (draw < fraction))
    return out


def _build(records: Dataset, tokenizer: Any, weights: dict[str, float], cache: Optional[Path],
           o: _Options) -> tuple[DataBundle, list[FileIssue]]:
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    issues = record_issues(records)
    names, chat = column(records, "name"), column(records, "chat")
    record_rows = [i for i, name in enumerate(names) if name is not None]
    if not record_rows:
        raise DataError("the sources hold no usable documents:\n" + "\n".join(map(str, issues)))
    if len({names[i] for i in record_rows}) != len(record_rows):
        raise DataError("two sources give documents of the same name; give the sources distinct 'name's")
    tokens, tokens_key = tokenise_records(records, tokenizer, content_hash(records),
                                          cache / "tokens" if cache else None, o.num_proc)
    issues += sample_issues(records, tokens, o.block_size, o.on_too_long)
    n_tokens, errors = column(tokens, "n_tokens"), column(tokens, "chat_error")
    kept = [i for i in record_rows if not chat[i] or (errors[i] is None and n_tokens[i] <= o.block_size)]
    row_of = {names[i]: i for i in kept}
    plan = split_documents(sorted(row_of), test_fraction=o.test_fraction, min_test_docs=o.min_test_docs,
                           validation_fraction=o.validation_fraction, min_validation_docs=o.min_validation_docs,
                           seed=o.seed)
    sources_of = column(records, "source")
    train_rows = [row_of[n] for n in weighted(plan.train, {n: sources_of[row_of[n]] for n in plan.train}, weights)]

    text_order = np.asarray([i for i in train_rows if not chat[i] and n_tokens[i]], dtype=np.int64)
    chat_order = np.asarray([i for i in train_rows if chat[i]], dtype=np.int64)
    parts = [pack_rows(tokens, order, is_chat, o.block_size, eos, pad, cache / "blocks" if cache else None,
                       tokens_key, o.num_proc, train_on_inputs=o.train_on_inputs, packing=o.packing)
             for order, is_chat in ((text_order, False), (chat_order, True)) if len(order)]
    train = concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    loss: LossTokens = "all" if o.train_on_inputs or not len(chat_order) else \
        "assistant" if not len(text_order) else "mixed"

    split_rows = {split: [row_of[n] for n in getattr(plan, split)] for split in ("validation", "test")}
    evaluation = {split: eval_set(records, tokens, rows, o.train_on_inputs) for split, rows in split_rows.items()}
    split_of = {name: split for split in ("train", "validation", "test") for name in getattr(plan, split)}
    extra = Dataset.from_dict({"split": [split_of.get(n) for n in names]})
    documents = concatenate_datasets([records.select_columns(["name", "text", "n_pages"]), extra,
                                      records.select_columns(["source"])], axis=1).select(kept)

    chars, pages = column(records, "n_chars"), column(records, "n_pages")
    stats = {"train": SplitStats(len(plan.train), sum(pages[row_of[n]] for n in plan.train),
                                 sum(chars[i] for i in train_rows), sum(n_tokens[i] for i in train_rows), len(train),
                                 target_tokens(train))}
    for split in ("validation", "test"):
        rows = split_rows[split]
        if rows or split == "test":
            n = sum(n_tokens[i] for i in rows)
            stats[split] = SplitStats(len(rows), sum(pages[i] for i in rows), sum(chars[i] for i in rows), n,
                                      -(-n // o.block_size))
    # no log line per issue here: they are returned, and each caller names them once (the run's data summary, `memfit
    # data inspect`); logging them here too printed every skipped input twice
    return DataBundle(train=train, test=evaluation["test"],
                      validation=evaluation["validation"] if o.validation_fraction else None, documents=documents,
                      plan=plan, block_size=o.block_size, eos_token_id=eos, stats=stats, loss_tokens=loss,
                      packed=o.packing, chat=bool(len(chat_order))), issues
