"""Token-weighted perplexity and bits per byte over whole documents, with sliding windows and several processes.

Which tokens are scored
    A document of n tokens has n - 1 predicted tokens: every token but the first, which has no context (prepend a BOS
    token if the first text token should be scored too). Each of them is scored exactly once. The first window of a
    document holds its first `context_length` tokens; every later window scores the next `stride` unscored tokens (fewer
    at the document end) after the `context_length - stride` tokens just before them, given to the model but masked out
    of the loss (as in https://huggingface.co/docs/transformers/perplexity). Windows never cross documents.
    A window of L tokens predicts at most L - 1 of them, so consecutive windows must share at least one token: `stride`
    is capped at `context_length - 1`. The default (and `stride=context_length`) thus gives disjoint windows that share
    only that one boundary token; unlike the HF guide's stride == context loop, no token at a window start goes unscored.

Which bytes are counted
    All UTF-8 bytes of every scored document (its `n_bytes`). With a BOS-prepending tokenizer the unscored first token
    carries no text, so this is exactly the bytes of the scored text. Without BOS the first token's few bytes are
    counted but not scored, a bias of one token per document (bits per byte ~0.1% low on a 4-KB document);
    subtracting them would need the tokenizer here, while `n_bytes` of the whole text is what other models'
    tokenizations of the same document agree on. Documents of fewer than 2 tokens score nothing and count no bytes.

Several processes
    Every rank builds the same window list from the full document list and takes windows[rank::world], so uneven
    counts neither duplicate nor drop a window (no dataloader padding). The bytes of a document are counted by the rank
    that owns its first window. (NLL, tokens, bytes) are then summed over ranks, and every rank returns the same result.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm.auto import tqdm

from memfit.core.loss import IGNORE_INDEX, model_inputs, shifted_labels
from memfit.core.processes import rank_and_world

LossFn = Callable[[torch.nn.Module, dict[str, torch.Tensor]], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class PerplexityResult:
    perplexity: float
    nll_sum: float  # nats, summed over all scored tokens of all processes
    tokens: int  # predicted tokens scored: sum over scored documents of len(doc) - 1
    bytes: int | None  # UTF-8 bytes of the scored documents; None if the documents carry no n_bytes
    bits_per_byte: float | None
    context_length: int
    stride: int  # the stride used, after capping at context_length - 1
    documents: int  # documents scored (those with at least 2 tokens)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Window:
    doc: int
    start: int  # first token given to the model
    first_scored: int  # first token scored (> start, so it has context)
    end: int  # one past the last token, which is scored


def document_windows(n_tokens: int, context_length: int, stride: int, doc: int = 0) -> list[Window]:
    """Windows of one document, scoring tokens 1 .. n_tokens - 1 exactly once; empty below 2 tokens."""
    if n_tokens < 2:
        return []
    end = min(context_length, n_tokens)
    windows = [Window(doc, 0, 1, end)]
    while end < n_tokens:
        new_end = min(end + stride, n_tokens)
        # The context start depends only on where scoring starts, not on where the document ends: a token's score
        # never depends on what follows it, and stride == context_length - 1 gives truly disjoint windows.
        windows.append(Window(doc, max(0, end + stride - context_length), end, new_end))
        end = new_end
    return windows


def _token_lists(documents, with_labels: bool = False) -> tuple[list[list[int]], list[int] | None,
                                                                 list[list[int] | None]]:
    """Token ids, byte counts and (`with_labels`) label masks (None: every token counts) from a Dataset / list of
    {'input_ids', 'n_bytes', optional 'labels'} dicts, or plain token-id lists."""
    ids, n_bytes, labels = [], [], []
    for doc in documents:
        if isinstance(doc, Mapping):
            ids.append(list(doc["input_ids"]))
            n_bytes.append(doc.get("n_bytes"))
            labels.append(list(doc["labels"]) if with_labels and doc.get("labels") is not None else None)
        else:
            ids.append(list(doc))
            n_bytes.append(None)
            labels.append(None)
    return ids, (None if any(b is None for b in n_bytes) else [int(b) for b in n_bytes]), labels


def has_label_mask(documents) -> bool:
    """True when some document's `labels` leave tokens out (chat data trained on the assistant's tokens only)."""
    return any(isinstance(d, Mapping) and d.get("labels") is not None and list(d["labels"]) != list(d["input_ids"])
               for d in documents)


def collate_windows(windows: Sequence[Window], token_ids: Sequence[Sequence[int]], padding_side: str = "right",
                    pad_token_id: int = 0, masks: Sequence[Sequence[int] | None] | None = None) -> dict[str, torch.Tensor]:
    """Pad windows into one batch. Labels are HF-aligned (the loss shifts them): -100 on context and padding, and
    where a document's own `masks` entry (its labels) says -100. Position ids are explicit so that left padding does
    not shift the positions of real tokens."""
    width = max(w.end - w.start for w in windows)
    input_ids = torch.full((len(windows), width), pad_token_id, dtype=torch.long)
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    attention_mask = torch.zeros_like(input_ids)
    position_ids = torch.zeros_like(input_ids)
    for row, w in enumerate(windows):
        length = w.end - w.start
        offset = width - length if padding_side == "left" else 0
        real = slice(offset, offset + length)
        input_ids[row, real] = torch.tensor(token_ids[w.doc][w.start:w.end])
        scored = slice(offset + w.first_scored - w.start, offset + length)
        mask = masks[w.doc] if masks is not None else None
        labels[row, scored] = input_ids[row, scored] if mask is None else torch.tensor(mask[w.first_scored:w.end])
        attention_mask[row, real] = 1
        position_ids[row, real] = torch.arange(length)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids, "labels": labels}


def scored_positions_nll(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """`memfit.core.loss.causal_lm_nll`, but the LM head runs only from the first position whose next token is scored
    (`logits_to_keep`), and only scored positions are upcast to fp32: with a small stride most of a window is context,
    and full-vocabulary fp32 logits of every position are the peak of evaluation memory."""
    target = shifted_labels(batch)  # target[:, j] is predicted from position j
    first = int((target != IGNORE_INDEX).any(0).int().argmax())  # every batch has a scored token
    logits = model(**model_inputs(batch), use_cache=False, logits_to_keep=target.shape[1] + 1 - first).logits
    target = target[:, first:]
    scored = target != IGNORE_INDEX
    nll = F.cross_entropy(logits[:, :-1][scored].float(), target[scored], reduction="sum")
    return nll, scored.sum()


def perplexity(model: torch.nn.Module, documents, *, context_length: int = 512, stride: int | None = None,
               batch_size: int = 8, accelerator=None, loss_fn: LossFn | None = None, progress: bool = False,
               padding_side: str = "right", pad_token_id: int = 0, only_labels: bool = False) -> PerplexityResult:
    """Token-weighted perplexity exp(sum NLL / predicted tokens) over whole documents (see the module docstring for
    which tokens and bytes count and how work is split across processes).

    documents: a `datasets.Dataset` or sequence of dicts with `input_ids` and `n_bytes` (bits per byte needs n_bytes
        on every document), or a sequence of token-id lists (bits per byte is then None).
    stride: new tokens scored per window after a document's first; default context_length - 1 (disjoint windows).
    accelerator: an `accelerate.Accelerator`; without one, an initialised torch.distributed group is used if present.
    loss_fn: `(model, batch) -> (nll_sum, n_tokens)` tensors; batch has `input_ids`, `attention_mask`, `position_ids`
        and HF-aligned `labels` (-100 = not scored; the loss shifts by one), e.g. `memfit.core.loss.causal_lm_nll`.
        Default `scored_positions_nll`; a stack that never materialises full logits (chunked cross-entropy) plugs in.
    only_labels: score only the tokens the documents' `labels` keep (what a chat run trained on: the assistant's
        turns); bits per byte is then None (the documents' bytes include the unscored turns).
    """
    if context_length < 2:
        raise ValueError(f"context_length must be >= 2 (a window of L tokens predicts L - 1), got {context_length}")
    stride = min(context_length if stride is None else stride, context_length - 1)
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    loss_fn = loss_fn or scored_positions_nll
    token_ids, n_bytes, masks = _token_lists(documents, with_labels=only_labels)
    if any(m is not None for m in masks):
        n_bytes = None  # the documents' bytes include turns the labels leave unscored
    windows = [w for doc, ids in enumerate(token_ids) for w in document_windows(len(ids), context_length, stride, doc)]
    if not windows:  # identical on every rank, so raising here cannot hang a collective
        raise ValueError("no document has 2 or more tokens: nothing to score")
    # Longest first: batches of similar lengths waste little padding, and round-robin sharding balances the ranks.
    windows.sort(key=lambda w: w.end - w.start, reverse=True)
    rank, world = rank_and_world(accelerator)
    local = windows[rank::world]
    device = accelerator.device if accelerator is not None else next(model.parameters()).device

    # fp64 accumulators on the device: no host sync per batch, no rounding drift over many batches.
    totals = torch.zeros(3, dtype=torch.float64, device=device)  # nll, tokens, bytes
    if n_bytes is not None:
        totals[2] = sum(n_bytes[w.doc] for w in local if w.first_scored == 1)
    was_training = model.training
    model.eval()
    try:
        # no_grad rather than inference_mode: this runs mid-training, and tensors a model caches lazily under
        # inference_mode (e.g. rotary tables) cannot be saved for backward afterwards.
        with torch.no_grad():
            batches = range(0, len(local), batch_size)
            for i in tqdm(batches, desc="perplexity", disable=not progress or rank != 0):
                batch = collate_windows(local[i:i + batch_size], token_ids, padding_side, pad_token_id, masks)
                nll, count = loss_fn(model, {k: v.to(device) for k, v in batch.items()})
                totals[0] += nll
                totals[1] += count
    finally:
        model.train(was_training)

    if world > 1 and accelerator is not None:
        totals = accelerator.reduce(totals, reduction="sum")
    elif world > 1:
        dist.all_reduce(totals)
    nll_sum, tokens, total_bytes = totals.tolist()
    tokens = int(tokens)
    if not tokens:  # identical on every rank after the reduction
        raise ValueError("the documents' labels leave no token to score: evaluate all tokens (only_labels=False)")
    total_bytes = int(total_bytes) if n_bytes is not None else None
    return PerplexityResult(
        perplexity=math.exp(nll_sum / tokens),
        nll_sum=nll_sum,
        tokens=tokens,
        bytes=total_bytes,
        bits_per_byte=nll_sum / math.log(2) / total_bytes if total_bytes else None,
        context_length=context_length,
        stride=stride,
        documents=len({w.doc for w in windows}),
    )
