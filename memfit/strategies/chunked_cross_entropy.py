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
from ..ops.linear_cross_entropy import linear_cross_entropy


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
        est.logits, est.loss_chunk_tokens = "chunked", self.chunk
