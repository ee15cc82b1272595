"""The default loss: summed next-token NLL in fp32, so the loop can normalise by the true token count."""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The keys a causal LM forward takes. Packed blocks carry position_ids that restart at every document,
    from which transformers builds a block-causal mask, so documents do not attend to each other."""
    return {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids") if batch.get(k) is not None}


def masked_labels(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Labels aligned with input_ids (HF convention), padding set to IGNORE_INDEX."""
    labels = batch.get("labels", batch["input_ids"])
    if batch.get("attention_mask") is not None:
        labels = labels.masked_fill(batch["attention_mask"] == 0, IGNORE_INDEX)
    return labels


def shifted_labels(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return masked_labels(batch)[:, 1:]


def count_predicted_tokens(batch: dict[str, torch.Tensor]) -> int:
    return int((shifted_labels(batch) != IGNORE_INDEX).sum())


def causal_lm_nll(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of token NLLs, number of predicted tokens) as tensors, so nothing syncs with the device.
    Padding and -100 labels never count."""
    logits = model(**model_inputs(batch), use_cache=False).logits
    # The labels shift, not the logits: `logits[:, :-1]` would copy the (batch, seq, vocab) logits (and its backward
    # allocate another zero-filled one), the largest tensors of a small model's step; the last position's target is
    # IGNORE_INDEX instead, so the sum and the count are the same.
    target = F.pad(shifted_labels(batch), (0, 1), value=IGNORE_INDEX)
    nll = F.cross_entropy(logits.flatten(0, 1).float(), target.flatten(), reduction="sum", ignore_index=IGNORE_INDEX)
    return nll, (target != IGNORE_INDEX).sum()
