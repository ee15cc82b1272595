"""The loss formed inside the model's forward: an lm_head that, given targets, returns the summed NLL in place of the
logits, so the full [tokens x vocabulary] logits never exist. Shared by the strategies that fuse lm_head and
cross-entropy (liger; the same contract as chunked_cross_entropy's head): each brings its own loss function
`fn(hidden [.., H], weight [V, H], targets [..], chunk, dtype) -> summed NLL` (memfit.ops.cross_entropy_kernels).
The loss is formed inside the model's forward, where DDP/FSDP/DeepSpeed wrappers have the weight ready.
A model that soft-caps its final logits (Gemma 2) would cap what the head returns, the loss itself: a head given the
cap applies it inside its loss (`softcap=`) and the model's own cap is off for that forward; a head without it is
refused there, never a silently uncapped or capped-twice loss.
"""

from __future__ import annotations

import contextlib

import torch

from ..core.families import final_logit_softcap
from ..core.loss import IGNORE_INDEX, masked_labels, model_inputs
from ..core.wrapping import Wrapper
from ._model_parts import causal_lm, lm_head


class LossHead(Wrapper):
    """Swapped in for lm_head (same weight, same name; see memfit.core.wrapping). Inside `with head.targets(labels)`
    its forward returns the summed NLL; otherwise it is the lm_head."""

    def __init__(self, inner: torch.nn.Module, chunk: int, dtype: torch.dtype, loss_fn, softcap: float | None = None):
        super().__init__(inner)
        self.chunk, self.dtype, self.loss_fn, self._targets = chunk, dtype, loss_fn, None
        self.softcap = softcap  # the model's final-logit soft-cap, applied by loss_fn inside its chunks

    @contextlib.contextmanager
    def targets(self, labels: torch.Tensor):
        # shift the labels, not the hidden states: a [:, :-1] slice would copy every hidden state once more
        self._targets = torch.nn.functional.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)
        try:
            yield
        finally:
            self._targets = None

    def forward(self, hidden):
        if self._targets is None:
            return self.inner(hidden)
        capped = {"softcap": self.softcap} if self.softcap else {}
        return self.loss_fn(hidden, self.inner.weight, self._targets, self.chunk, self.dtype, **capped)


@contextlib.contextmanager
def _model_cap_in_head(config, head: LossHead):
    cap = final_logit_softcap(config)
    if not cap:
        yield
        return
    if head.softcap != cap:
        raise ValueError(f"this model soft-caps its logits (final_logit_softcapping={cap}) and the fused loss head "
                         f"does not: use cce (it caps inside its chunks)")
    config.final_logit_softcapping = None
    try:
        yield
    finally:
        config.final_logit_softcapping = cap


def head_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """compute_loss through a LossHead: (summed NLL, predicted tokens)."""
    labels = masked_labels(batch)
    head = lm_head(model)
    with head.targets(labels), _model_cap_in_head(causal_lm(model).config, head):
        # no labels passed: the model's own loss would need the logits; the head returns the loss as "logits"
        out = model(**model_inputs(batch), use_cache=False)
    return out.logits, (labels[:, 1:] != IGNORE_INDEX).sum()
