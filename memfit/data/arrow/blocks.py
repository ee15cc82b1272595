"""Token rows -> packed training blocks as a batched `Dataset.map` over block numbers, identical to the in-memory
`pack_documents` (plain text) and `pack_samples` (chat), written to an Arrow cache file and memory-mapped.

A batched map sees one slice of rows at a time, and a packed block depends on where every earlier document ended,
so the layout is decided first from the token *counts* alone (one integer per document, held in memory): plain
text is one stream `doc EOS doc EOS ... pad` cut every `block_size` tokens, so block b covers stream positions
[b * block_size, (b + 1) * block_size) and the documents overlapping it are found by binary search in the cumulative
lengths; chat samples are packed whole and greedily, so a first pass over the lengths gives each block its first
sample. Each batch of block numbers then reads only the documents it covers from the memory-mapped token rows, so
any shard of blocks can be built in any worker (`num_proc`) and the result does not depend on the sharding.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from datasets import Dataset, Features, List, Value

from memfit.core.loss import IGNORE_INDEX
from memfit.data.arrow.integrity import cached_map

BLOCK_FEATURES = Features({name: List(Value("int32")) for name in ("input_ids", "labels", "position_ids")})


def _block_numbers(batch: dict[str, list]) -> tuple[int, int]:
    first, last = batch["block"][0], batch["block"][-1] + 1
    assert last - first == len(batch["block"]), "block numbers of a batch must be consecutive"
    return first, last


def _text_blocks(batch: dict[str, list], docs: Dataset, starts: np.ndarray, ends: np.ndarray, block_size: int,
                 eos: int, pad: int) -> dict[str, list]:
    """Stream positions [lo, hi) of `doc EOS doc EOS ... pad`, as `pack_documents` lays them out."""
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


def _chat_blocks(batch: dict[str, list], samples: Dataset, block_first: np.ndarray, block_size: int,
                 pad: int) -> dict[str, list]:
    """Whole samples per block, padding at each block's end, as `pack_samples` lays them out."""
    first_block, last_block = _block_numbers(batch)
    lo = int(block_first[first_block])
    rows = samples[lo:int(block_first[last_block])]
    out: dict[str, list] = {"input_ids": [], "labels": [], "position_ids": []}
    for b in range(first_block, last_block):
        members = range(int(block_first[b]) - lo, int(block_first[b + 1]) - lo)
        ids = [t for i in members for t in rows["input_ids"][i]]
        padding = block_size - len(ids)
        out["input_ids"].append(ids + [pad] * padding)
        out["labels"].append([t for i in members for t in rows["labels"][i]] + [IGNORE_INDEX] * padding)
        out["position_ids"].append([p for i in members for p in range(len(rows["input_ids"][i]))]
                                   + list(range(padding)))
    return out


def chat_block_starts(lengths: np.ndarray, block_size: int) -> np.ndarray:
    """Index of each block's first sample, and the sample count at the end: greedy whole-sample packing."""
    firsts, fill = [], block_size + 1  # the first sample always opens a block
    for i, n in enumerate(lengths.tolist()):
        if fill + n > block_size:
            firsts.append(i)
            fill = 0
        fill += n
    return np.asarray([*firsts, len(lengths)], dtype=np.int64)


def pack_arrow(tokens: Dataset, order: np.ndarray, chat: bool, block_size: int, eos: int, pad: int,
               cache_dir: Path, tokens_key: str, num_proc: int = 1, batch_size: int = 64) -> Dataset:
    """Blocks of the token rows `order` (training order, repeats for weights), memory-mapped from a cache file
    named by the token key, the order, the block size and the special tokens."""
    docs = tokens.select(order)
    lengths = np.asarray(tokens.data.column("n_tokens").to_numpy()[order], dtype=np.int64)
    settings = f"{tokens_key}\0{chat}\0{block_size}\0{eos}\0{pad}\0".encode() + order.astype(np.int64).tobytes()
    key = hashlib.sha256(settings).hexdigest()[:40]
    if chat:
        block_first = chat_block_starts(lengths, block_size)
        n_blocks, function = len(block_first) - 1, _chat_blocks
        kwargs = {"samples": docs, "block_first": block_first, "block_size": block_size, "pad": pad}
    else:
        ends = np.cumsum(lengths + 1)  # every document is followed by its EOS
        n_blocks, function = -(-int(ends[-1]) // block_size), _text_blocks
        kwargs = {"docs": docs, "starts": ends - lengths - 1, "ends": ends, "block_size": block_size, "eos": eos,
                  "pad": pad}
    numbers = Dataset.from_dict({"block": np.arange(n_blocks)})
    return cached_map(numbers, function, cache_dir, f"blocks-{key}", "packing", batch_size=batch_size,
                      num_proc=num_proc if num_proc > 1 else None, fn_kwargs=kwargs, remove_columns=["block"],
                      features=BLOCK_FEATURES)
