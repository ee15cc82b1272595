"""The default loss: summed next-token NLL over the scored labels, without copying the logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from memfit.core.loss import IGNORE_INDEX, causal_lm_nll


def _batch(vocab: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (3, 12), generator=g)
    labels = ids.clone()
    labels[0, :5] = IGNORE_INDEX  # an unscored prompt
    mask = torch.ones_like(ids)
    mask[2, 9:] = 0  # right padding
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def test_sum_and_count_match_the_shifted_logits_reference(tiny_llama):
    model = tiny_llama.double()
    batch = _batch(model.config.vocab_size)
    nll, count = causal_lm_nll(model, batch)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    target = batch["labels"].masked_fill(batch["attention_mask"] == 0, IGNORE_INDEX)[:, 1:]
    expected = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), target.reshape(-1), reduction="sum",
                               ignore_index=IGNORE_INDEX)
    assert int(count) == int((target != IGNORE_INDEX).sum())
    torch.testing.assert_close(nll.double(), expected, rtol=1e-6, atol=1e-6)  # the loss is summed in fp32


class _LargestAllocation(TorchDispatchMode):
    """The element count of every tensor an op returns, to see which ops copy the logits."""

    def __init__(self):
        super().__init__()
        self.copies_of: dict[str, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and not t._is_view():  # views share storage
                self.copies_of[str(func)] = max(self.copies_of.get(str(func), 0), t.numel())
        return out


def test_the_loss_does_not_copy_the_logits(tiny_llama):
    batch = _batch(tiny_llama.config.vocab_size)
    logits_numel = batch["input_ids"].numel() * tiny_llama.config.vocab_size
    shifted_numel = batch["input_ids"][:, 1:].numel() * tiny_llama.config.vocab_size
    with _LargestAllocation() as seen:
        nll, _ = causal_lm_nll(tiny_llama, batch)
        nll.backward()
    # a logits-sized result comes from the LM head, the log-softmax and their gradients; a copy of the shifted logits
    # (clone / contiguous of logits[:, :-1]) would show as an op returning exactly the shifted size
    assert logits_numel in seen.copies_of.values()  # the meter sees the logits themselves
    assert shifted_numel not in seen.copies_of.values(), seen.copies_of
