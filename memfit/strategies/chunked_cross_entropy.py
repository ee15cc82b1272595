"""Chunked (fused) lm_head + cross-entropy: full-vocabulary logits never exist for the whole batch.

With a 128k vocabulary the logits path (logits, their fp32 upcast and fp32 gradient: ~1.2 MB per token) is most of
the peak memory of LoRA fine-tuning. Here the lm_head matmul, log-softmax and the loss gradient are computed per chunk
of tokens *inside the forward pass*: each chunk's logits live only while its gradient w.r.t. the hidden states (and
the lm_head weight, if trained) is formed, then they are freed. The backward only scales the stored gradients by the
incoming gradient, so no chunk is recomputed and the per-token cost drops to one hidden-size gradient.
Matmuls run in the compute dtype; log-sum-exp, the loss and the weight-gradient accumulation run in fp32.
Families: the head sees the final hidden states, after everything the model does before lm_head (Gemma's scaled
embeddings included); Gemma 2's final-logit soft-cap, which the model applies after lm_head, is applied inside the
chunks instead, and the model's own cap is switched off for that forward (it would cap the loss otherwise).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import BaseModel, Field

from ..core.families import final_logit_softcap
from ..core.protocol import PHASE_LOSS, strategy_config
from ..core.registry import register_strategy
from ..core.wrapping import unwrap_all, unwrap_peft, wrap
from ..ops.cross_entropy_kernels import DESCRIPTIONS, implementation, resolve_implementation, transient_bytes
from ._loss_head import LossHead as ChunkedLossHead, head_loss  # the head and its loss, shared with liger


def fp32_on_cuda(ctx) -> bool:
    return ctx.on_cuda and ctx.compute_dtype not in (torch.bfloat16, torch.float16)


@register_strategy(aliases=("cce",))
class ChunkedCrossEntropy(BaseModel):
    model_config = strategy_config()
    name: ClassVar[str] = "chunked_ce"
    phase: ClassVar[int] = PHASE_LOSS
    speed_cost: ClassVar[float] = 1.0  # the full logits are never written: often faster
    shorthand: ClassVar[str] = "chunk"

    chunk: int = Field(1024, ge=16)  # tokens per chunk: chunk x vocab x 12 bytes of transient memory
    # which exact implementation: auto = the fastest present (torch native, then cut-cross-entropy, then memfit's)
    impl: Literal["auto", "torch", "cut", "memfit"] = "auto"

    @property
    def resolved_impl(self) -> str:
        return resolve_implementation(self.impl)  # before the model is known; a soft-capping model may differ

    def describe(self) -> str:
        fp32_note = " (memfit's chunked op for a loss in fp32 on CUDA)" if self.resolved_impl == "cut" else ""
        return (f"lm_head + cross-entropy fused in chunks of {self.chunk} tokens (no full logits) by "
                f"{DESCRIPTIONS[self.resolved_impl]}{fp32_note}")

    def spec_item(self) -> str:
        base = "cce" if self.chunk == 1024 else f"cce{self.chunk}"
        return base if self.impl == "auto" else f"{base}:impl={self.impl}"

    def transform_model(self, model, ctx):
        base = unwrap_peft(model)
        if not hasattr(base, "lm_head") or not hasattr(base, "model"):
            raise ValueError(f"chunked_ce needs a *ForCausalLM model with .model and .lm_head, got {type(base).__name__}")
        cap = final_logit_softcap(base.config)
        loss_fn = implementation(resolve_implementation(self.impl, softcap=bool(cap), fp32_on_cuda=fp32_on_cuda(ctx)))
        wrap(base, "lm_head", lambda head: ChunkedLossHead(head, self.chunk, ctx.compute_dtype, loss_fn, cap))
        return model

    def restore_model(self, model, ctx):
        return unwrap_all(model, ChunkedLossHead)

    def compute_loss(self, model, batch, ctx):
        return head_loss(model, batch)

    def estimate_memory(self, est, ctx):
        # only the hidden states and their gradient per token; logits exist one chunk at a time
        est.set_term("logits", "token", lambda e: float(2 * e.compute_bytes * e.hidden), self.name)
        # the implementation's own transient: one chunk's logits (memfit, torch), or per-token blocks (cut)
        impl = resolve_implementation(self.impl, softcap=bool(est.final_softcap), fp32_on_cuda=fp32_on_cuda(ctx))
        fixed, per_token = transient_bytes(impl, est.vocab, self.chunk, ctx.on_cuda)
        if est.final_softcap:  # the chunk's tanh, kept for the gradient's 1 - tanh^2 (fp32)
            fixed += 4.0 * est.vocab * self.chunk if impl == "memfit" else 0.0
            est.set_term("logit_softcap", "token", lambda e: 0.0, self.name)  # no full logits to cap
        est.set_term("loss_chunk", "transient", lambda e: fixed, self.name)
        if per_token:
            est.set_term("loss_kernel", "token", lambda e: per_token, self.name)
