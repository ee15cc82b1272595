"""Packing tokenized documents into fixed-length training blocks.

Layout of the token stream: doc1 EOS doc2 EOS ... (EOS closes every document, so the model learns to end one).
`position_ids` restart at 0 at every document start, at every block start and for the trailing padding. With
`attention_mask=None` (and no KV cache) transformers turns restarting positions into a block-causal mask, so a token
never attends to another document. Restarting at block starts too keeps positions below `block_size`, which matters
for rope variants that rescale with the largest position (dynamic NTK); with plain RoPE only relative offsets count,
so logits are unchanged.

Labels follow the HF convention (aligned with input_ids, the loss shifts them). -100 marks:
- the first token of every document: its "context" is the previous document's EOS, which the block-causal mask
  makes unrelated, so predicting it would train cross-document guessing;
- padding at the end of the last block.
The EOS after a document *is* a target: predicting the end of a document from its own text is legitimate.
"""
from __future__ import annotations

from collections.abc import Sequence

from ..core.loss import IGNORE_INDEX


def pack_documents(token_lists: Sequence[Sequence[int]], block_size: int, eos_token_id: int,
                   pad_token_id: int) -> dict[str, list[list[int]]]:
    """Columns `input_ids`, `labels`, `position_ids`, each a list of blocks of exactly `block_size` tokens."""
    if block_size < 2:
        raise ValueError(f"block_size must be at least 2, got {block_size}")
    ids: list[int] = []
    labels: list[int] = []
    starts: list[bool] = []  # True where a new attention segment (document or padding) begins
    for tokens in token_lists:
        if not tokens:
            continue
        document = [*tokens, eos_token_id]
        ids += document
        labels += [IGNORE_INDEX, *document[1:]]
        starts += [True] + [False] * (len(document) - 1)
    padding = -len(ids) % block_size
    ids += [pad_token_id] * padding
    labels += [IGNORE_INDEX] * padding
    starts += [True] + [False] * (padding - 1) if padding else []

    positions: list[int] = []
    for i, start in enumerate(starts):
        positions.append(0 if start or i % block_size == 0 else positions[-1] + 1)
    columns = {"input_ids": ids, "labels": labels, "position_ids": positions}
    return {name: [values[i:i + block_size] for i in range(0, len(values), block_size)]
            for name, values in columns.items()}
