"""Chunked (fused) lm_head + cross-entropy: full-vocabulary logits never exist for the whole batch.

With a 128k vocabulary the logits path (logits, their fp32 upcast and fp32 gradient: ~1.2 MB per token) is most of
the peak memory of LoRA fine-tuning. Here the lm_head matmul, log-softmax and the loss gradient are computed per chunk
of tokens *inside the forward pass*: each chunk's logits live only while its gradient w.r.t. the hidden states (and
the lm_head weight, if trained) is formed, then they are freed. The backward only scales the stored gradients by the
incoming gradient, so no chunk is recomputed and the per-token cost drops to one hidden-size gradient.
Matmuls run in the compute dtype; log-sum-exp, the loss and the weight-gradient accumulation run in fp32.
"""

from __future__ import annotations

import types
from typing import ClassVar

import torch
from pydantic import BaseModel, Field
from transformers.modeling_outputs import CausalLMOutputWithPast

from ..core.loss import IGNORE_INDEX, masked_labels, model_inputs
from ..core.protocol import PHASE_LOSS, strategy_config
from ..core.registry import register_strategy


class LinearCrossEntropy(torch.autograd.Function):
    """sum_t NLL(softmax(h_t W^T), y_t) over tokens with y_t != -100, in chunks; grads formed in forward."""

    @staticmethod
    def forward(ctx, hidden, weight, labels, chunk: int, dtype: torch.dtype):
        want_h, want_w = hidden.requires_grad, weight.requires_grad
        w = weight.to(dtype)
        total = torch.zeros((), device=hidden.device, dtype=torch.float32)
        grad_h = torch.empty_like(hidden) if want_h else None
        grad_w = torch.zeros(weight.shape, device=weight.device, dtype=torch.float32) if want_w else None
        for start in range(0, hidden.shape[0], chunk):
            h = hidden[start:start + chunk].to(dtype)
            y = labels[start:start + chunk]
            valid = y != IGNORE_INDEX
            logits = (h @ w.T).float()
            lse = torch.logsumexp(logits, dim=-1)
            target = logits.gather(1, y.clamp_min(0)[:, None]).squeeze(1)
            total += ((lse - target) * valid).sum()
            if want_h or want_w:
                probs = logits.sub_(lse[:, None]).exp_()  # softmax, reusing the logits' memory
                probs[torch.arange(len(y), device=y.device), y.clamp_min(0)] -= 1.0
                g = (probs * valid[:, None]).to(dtype)
                del probs, logits
                if want_h:
                    grad_h[start:start + chunk] = (g @ w).to(hidden.dtype)
                if want_w:
                    grad_w.addmm_(g.T.float(), h.float())
        ctx.save_for_backward(*(t for t in (grad_h, grad_w) if t is not None))
        ctx.want = (want_h, want_w)
        return total

    @staticmethod
    def backward(ctx, grad_out):
        saved = iter(ctx.saved_tensors)
        want_h, want_w = ctx.want
        # In place: the stored gradient is as large as the hidden states and is used exactly once.
        gh = next(saved).mul_(grad_out.to(ctx.saved_tensors[0].dtype)) if want_h else None
        gw = next(saved).mul_(grad_out) if want_w else None
        return gh, gw, None, None, None


def linear_cross_entropy(hidden, weight, labels, chunk: int = 1024, dtype: torch.dtype | None = None):
    """Summed NLL of `labels` (-100 ignored) under logits `hidden @ weight.T`, without materialising all logits."""
    with torch.autocast(hidden.device.type, enabled=False):
        return LinearCrossEntropy.apply(hidden.reshape(-1, hidden.shape[-1]), weight, labels.reshape(-1), chunk,
                                        dtype or hidden.dtype)


def _fused_forward(self, input_ids=None, attention_mask=None, position_ids=None, labels=None, **kwargs):
    """LlamaForCausalLM.forward that returns the *summed* NLL as `loss` and no logits when labels are given.
    Installed on the model instance so DDP/FSDP/DeepSpeed wrappers still run their own forward hooks."""
    if labels is None:
        return type(self).forward(self, input_ids=input_ids, attention_mask=attention_mask,
                                  position_ids=position_ids, **kwargs)
    kwargs.pop("logits_to_keep", None)
    out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, **kwargs)
    # shift the labels, not the hidden states: a [:, :-1] slice would copy every hidden state once more
    targets = torch.nn.functional.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)
    loss = linear_cross_entropy(out.last_hidden_state, self.lm_head.weight, targets, self._memfit_loss_chunk,
                                self._memfit_loss_dtype)
    return CausalLMOutputWithPast(loss=loss)


@register_strategy(aliases=("cce",))
class ChunkedCrossEntropy(BaseModel):
    model_config = strategy_config()
    name: ClassVar[str] = "chunked_ce"
    phase: ClassVar[int] = PHASE_LOSS
    shorthand: ClassVar[str] = "chunk"

    chunk: int = Field(1024, ge=16)  # tokens per chunk: chunk x vocab x 6 bytes of transient memory

    def describe(self) -> str:
        return f"lm_head + cross-entropy fused in chunks of {self.chunk} tokens (no full logits; grads in forward)"

    def spec_item(self) -> str:
        return "cce" if self.chunk == 1024 else f"cce{self.chunk}"

    def transform_model(self, model, ctx):
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        if not hasattr(base, "lm_head") or not hasattr(base, "model"):
            raise ValueError(f"chunked_ce needs a *ForCausalLM model with .model and .lm_head, got {type(base).__name__}")
        base._memfit_loss_chunk, base._memfit_loss_dtype = self.chunk, ctx.compute_dtype
        base.forward = types.MethodType(_fused_forward, base)
        return model

    def compute_loss(self, model, batch, ctx):
        labels = masked_labels(batch)
        out = model(**model_inputs(batch), labels=labels, use_cache=False)
        return out.loss, (labels[:, 1:] != IGNORE_INDEX).sum()

    def estimate_memory(self, est, ctx):
        # only the hidden states and their gradient per token; logits exist one chunk at a time
        est.set_term("logits", "token", lambda e: float(2 * e.compute_bytes * e.hidden), self.name)
        est.set_term("loss_chunk", "transient", lambda e: float(e.vocab * self.chunk * 12), self.name)
