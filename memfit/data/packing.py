"""The one packer: token rows -> fixed-length training blocks. The Arrow storage maps `text_blocks` / `chat_blocks`
over block numbers into a verified cache file; the in-memory storage and `pack_documents` / `pack_samples` call the
very same functions on rows held in memory, so both storages give identical blocks by construction.

Plain text is one stream `doc1 EOS doc2 EOS ... pad` cut every `block_size` tokens (EOS closes every document, so
the model learns to end one). Chat samples are packed whole and greedily (a sample never straddles two blocks),
padding at each block's end. `position_ids` restart at 0 at every document/sample start, at every block start and
for the padding: with `attention_mask=None` transformers turns restarting positions into a block-causal mask, so a
token never attends to another document; restarting at block starts keeps positions below `block_size` (dynamic NTK
rope variants rescale with the largest position; plain RoPE logits are unchanged).

Labels follow the HF convention (aligned with input_ids, the loss shifts them). -100 marks the first token of every
document or sample (its "context" is another document, which the mask makes unrelated, so predicting it would train
cross-document guessing), the padding, and in chat samples everything but the assistant's reply (unless
`train_on_inputs`). The EOS after a document *is* a target: predicting the end of a document from its own text is
legitimate.

Unpacked (`packing=False`, TRL's `packing=False`): one document or chat sample per block, right-padded, with an
`attention_mask` that is 0 on the padding (labels -100 there too), so the loss and the perplexity count exactly the
tokens they would without padding. A text document longer than a block continues in blocks of its own (each its own
sequence, positions from 0); a chat sample longer than a block is skipped and reported, as when packing.

A batched map sees one slice of rows at a time and a block depends on where every earlier document ended, so the
layout is decided first from the token *counts* alone (one integer per document): text block b covers stream
positions [b * block_size, (b + 1) * block_size), and the documents overlapping it are found by binary search in the
cumulative lengths; chat blocks get their first sample from a greedy pass over the lengths. Each batch of block
numbers then reads only the rows it covers, so any shard can be built in any worker (`num_proc`).
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import numpy as np
from datasets import Dataset, Features, List, Value

from memfit.core.loss import IGNORE_INDEX
from memfit.data.arrow.cache_files import cached_map

BLOCK_FEATURES = Features({name: List(Value("int32")) for name in ("input_ids", "labels", "position_ids")})
PADDED_FEATURES = Features({**BLOCK_FEATURES, "attention_mask": List(Value("int8"))})
Columns = dict[str, list[list[int]]]


def _block_numbers(batch: dict[str, list]) -> tuple[int, int]:
    first, last = batch["block"][0], batch["block"][-1] + 1
    assert last - first == len(batch["block"]), "block numbers of a batch must be consecutive"
    return first, last


def text_blocks(batch: dict[str, list], docs: Dataset, starts: np.ndarray, ends: np.ndarray, block_size: int,
                eos: int, pad: int) -> Columns:
    """Blocks `batch["block"]` of the stream `doc EOS doc EOS ... pad` of the token rows `docs`."""
    first_block, last_block = _block_numbers(batch)
    lo, hi = first_block * block_size, last_block * block_size
    first = int(np.searchsorted(ends, lo, side="right"))  # the first document ending after lo
    last = int(np.searchsorted(starts, hi, side="left"))  # one past the last document starting before hi
    rows = docs[first:last]["input_ids"]  # never empty: every block starts before the stream's end
    ids = np.concatenate([np.append(np.asarray(r, dtype=np.int64), eos) for r in rows])
    labels = ids.copy()
    labels[starts[first:last] - starts[first]] = IGNORE_INDEX  # each document's first token
    segment = np.repeat(starts[first:last], ends[first:last] - starts[first:last])  # where each token's document began
    origin = int(starts[first])
    padding = hi - origin - len(ids)  # only the last batch reaches past the stream's end
    if padding > 0:
        ids = np.concatenate([ids, np.full(padding, pad)])
        labels = np.concatenate([labels, np.full(padding, IGNORE_INDEX)])
        segment = np.concatenate([segment, np.full(padding, origin + len(segment))])  # padding is its own segment
    window = slice(lo - origin, hi - origin)
    ids, labels, segment = ids[window], labels[window], segment[window]
    position = np.arange(lo, hi)
    position = position - np.maximum(segment, position - position % block_size)  # restart per document and block
    return {name: values.reshape(-1, block_size).tolist()
            for name, values in (("input_ids", ids), ("labels", labels), ("position_ids", position))}


def document_blocks(batch: dict[str, list], docs: Dataset, doc_first: np.ndarray, block_size: int, eos: int,
                    pad: int) -> Columns:
    """Unpacked text: blocks `batch["block"]` where document d fills blocks doc_first[d] .. doc_first[d + 1] - 1, its
    EOS after it when the last block has room, and the rest right-padded, masked out of attention and loss."""
    first_block, last_block = _block_numbers(batch)
    d0 = int(np.searchsorted(doc_first, first_block, side="right")) - 1
    d1 = int(np.searchsorted(doc_first, last_block, side="left"))
    rows = docs[d0:d1]["input_ids"]
    out: Columns = {"input_ids": [], "labels": [], "position_ids": [], "attention_mask": []}
    for b in range(first_block, last_block):
        d = int(np.searchsorted(doc_first, b, side="right")) - 1
        doc, start = rows[d - d0], (b - int(doc_first[d])) * block_size
        piece = list(doc[start:start + block_size])  # a slice per block: a long document is never copied whole
        if len(piece) < block_size and start + len(piece) == len(doc):
            piece.append(eos)  # the document's end, in its last block
        padding = block_size - len(piece)
        # the loss shifts, so a block's first label is never a target: -100 says so (as for packed documents)
        out["input_ids"].append(piece + [pad] * padding)
        out["labels"].append([IGNORE_INDEX, *piece[1:]] + [IGNORE_INDEX] * padding)
        out["position_ids"].append(list(range(block_size)))
        out["attention_mask"].append([1] * len(piece) + [0] * padding)
    return out


def chat_blocks(batch: dict[str, list], samples: Dataset, block_first: np.ndarray, block_size: int, pad: int,
                train_on_inputs: bool = False, padded: bool = False) -> Columns:
    """Whole samples per block, padding at each block's end; labels the assistant's tokens only, or every token
    but each sample's first when `train_on_inputs`. `padded` (one sample per block): an attention mask, 0 on the
    padding."""
    first_block, last_block = _block_numbers(batch)
    lo = int(block_first[first_block])
    rows = samples[lo:int(block_first[last_block])]
    out: Columns = {"input_ids": [], "labels": [], "position_ids": [], **({"attention_mask": []} if padded else {})}
    for b in range(first_block, last_block):
        members = range(int(block_first[b]) - lo, int(block_first[b + 1]) - lo)
        ids = [t for i in members for t in rows["input_ids"][i]]
        if train_on_inputs:
            labels = [t for i in members for t in [IGNORE_INDEX, *rows["input_ids"][i][1:]]]
        else:
            labels = [t for i in members for t in rows["labels"][i]]
        padding = block_size - len(ids)
        out["input_ids"].append(ids + [pad] * padding)
        out["labels"].append(labels + [IGNORE_INDEX] * padding)
        out["position_ids"].append([p for i in members for p in range(len(rows["input_ids"][i]))]
                                   + list(range(padding)))
        if padded:
            out["attention_mask"].append([1] * len(ids) + [0] * padding)
    return out


def chat_block_starts(lengths: np.ndarray, block_size: int, packing: bool = True) -> np.ndarray:
    """Index of each block's first sample, and the sample count at the end: greedy whole-sample packing (or one
    sample per block)."""
    if not packing:
        return np.arange(len(lengths) + 1, dtype=np.int64)
    firsts, fill = [], block_size + 1  # the first sample always opens a block
    for i, n in enumerate(lengths.tolist()):
        if fill + n > block_size:
            firsts.append(i)
            fill = 0
        fill += n
    return np.asarray([*firsts, len(lengths)], dtype=np.int64)


def _layout(lengths: np.ndarray, chat: bool, block_size: int, eos: int, pad: int, train_on_inputs: bool,
            packing: bool = True):
    """(number of blocks, block function, its keyword arguments but the rows) from the token counts alone."""
    if chat:
        block_first = chat_block_starts(lengths, block_size, packing)
        return len(block_first) - 1, chat_blocks, {"block_first": block_first, "block_size": block_size, "pad": pad,
                                                   "train_on_inputs": train_on_inputs, "padded": not packing}
    if not packing:  # each document in blocks of its own; its EOS only where the last block has room (alone at a
        # block's start it would be no target: a block of padding and one untrained EOS)
        doc_first = np.concatenate([[0], np.cumsum(-(-lengths // block_size))]).astype(np.int64)
        return int(doc_first[-1]), document_blocks, {"doc_first": doc_first, "block_size": block_size, "eos": eos,
                                                     "pad": pad}
    ends = np.cumsum(lengths + 1)  # every document is followed by its EOS
    return -(-int(ends[-1]) // block_size), text_blocks, {"starts": ends - lengths - 1, "ends": ends,
                                                          "block_size": block_size, "eos": eos, "pad": pad}


def pack_rows(tokens: Dataset, order: np.ndarray, chat: bool, block_size: int, eos: int, pad: int,
              cache_dir: Optional[Path], tokens_key: str, num_proc: int = 1, batch_size: int = 64,
              train_on_inputs: bool = False, packing: bool = True) -> Dataset:
    """Blocks of the token rows `order` (training order, repeats for weights): memory-mapped from a verified cache
    file named by the token key, the order and the settings, or in memory when `cache_dir` is None. `packing`
    False: one document or sample per block, padded, with an attention mask."""
    docs = tokens.select(order)
    lengths = np.asarray(tokens.data.column("n_tokens").to_numpy()[order], dtype=np.int64)
    unpacked = "" if packing else "unpacked"  # packed keys as before: existing cache files stay valid
    settings = f"{tokens_key}\0{chat}\0{block_size}\0{eos}\0{pad}\0{train_on_inputs}\0{unpacked}".encode() \
        + order.astype(np.int64).tobytes()
    key = hashlib.sha256(settings).hexdigest()[:40]
    n_blocks, function, kwargs = _layout(lengths, chat, block_size, eos, pad, train_on_inputs, packing)
    kwargs["samples" if chat else "docs"] = docs
    numbers = Dataset.from_dict({"block": np.arange(n_blocks)})
    return cached_map(numbers, function, cache_dir, f"blocks-{key}", "packing", batch_size=batch_size,
                      num_proc=num_proc if num_proc > 1 else None, fn_kwargs=kwargs, remove_columns=["block"],
                      features=BLOCK_FEATURES if packing else PADDED_FEATURES)


def _pack_in_memory(rows: dict[str, list], chat: bool, block_size: int, eos: int, pad: int,
                    packing: bool) -> Columns:
    lengths = np.asarray([len(ids) for ids in rows["input_ids"]], dtype=np.int64)
    if not len(lengths):
        return {"input_ids": [], "labels": [], "position_ids": [], **({} if packing else {"attention_mask": []})}
    n_blocks, function, kwargs = _layout(lengths, chat, block_size, eos, pad, False, packing)
    kwargs["samples" if chat else "docs"] = Dataset.from_dict(rows)
    return function({"block": list(range(n_blocks))}, **kwargs)


def pack_documents(token_lists: Sequence[Sequence[int]], block_size: int, eos_token_id: int,
                   pad_token_id: int, packing: bool = True) -> Columns:
    """Columns `input_ids`, `labels`, `position_ids` (and `attention_mask` when not `packing`), each a list of
    blocks of exactly `block_size` tokens."""
    if block_size < 2:
        raise ValueError(f"block_size must be at least 2, got {block_size}")
    rows = {"input_ids": [list(tokens) for tokens in token_lists if len(tokens)]}
    return _pack_in_memory(rows, False, block_size, eos_token_id, pad_token_id, packing)


def pack_samples(samples: Sequence[tuple[Sequence[int], Sequence[int]]], block_size: int,
                 pad_token_id: int, packing: bool = True) -> Columns:
    """Whole (input_ids, labels) samples into blocks of `block_size` (one per block when not `packing`); a sample
    longer than a block is a caller error (they are filtered, and reported, before packing)."""
    for ids, _ in samples:
        if len(ids) > block_size:
            raise ValueError(f"a sample of {len(ids)} tokens does not fit a block of {block_size}")
    rows = {"input_ids": [list(ids) for ids, _ in samples], "labels": [list(labels) for _, labels in samples]}
    return _pack_in_memory(rows, True, block_size, pad_token_id, pad_token_id, packing)
