"""Liger-Kernel's Triton kernels (RMSNorm, SwiGLU, RoPE, fused linear cross-entropy) on this model instance only.

`liger_kernel.transformers.apply_liger_kernel_to_llama` swaps module *classes* and transformers' module-level RoPE
function for every model in the process. Here every effect is owned by the model and undone by restore_model:
- norms and MLPs: Liger's own per-module patchers rebind the forward of this model's modules; what they add to a
  module is recorded and removed again (`_InstancePatches`);
- RoPE: transformers' attention calls the module-level `apply_rotary_pos_emb` of its family's modeling file, so each
  attention of this model is wrapped (`_LigerRope`) and swaps Liger's RoPE in for the length of its own call only.
  Another model in the process, Liger or not, never sees it (the swap is not thread-safe: one training thread runs
  the forward, as in every memfit run);
- the fused cross-entropy: lm_head swapped for a loss head (`_loss_head.LossHead`) with Liger's kernel.
Families whose norms or MLP differ from Llama's (Gemma's offset norms and GeGLU, Phi-3's fused gate_up) are refused.
CUDA only: Triton kernels. Liger's cross-entropy writes gradients in place during forward, which activation
offload's saved-tensor hooks then move to the host as if they were activations: refused, with the fix.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch
from pydantic import BaseModel

from ..core.families import family_of
from ..core.protocol import PHASE_LOSS, StackError, strategy_config
from ..core.registry import register_strategy
from ..core.wrapping import Wrapper, unwrap_all, wrap
from . import _model_parts as parts
from ._loss_head import LossHead, head_loss

# Families whose RMSNorm (no offset, Llama casting) and gate/up/down SwiGLU MLP Liger's Llama kernels compute exactly.
LIGER_FAMILIES = frozenset({"llama", "mistral", "qwen2", "qwen3"})
ROPE_FUNCTION = "apply_rotary_pos_emb"  # what transformers' attention code calls, one per family modeling file


@dataclass(frozen=True)
class LigerAPI:
    """The parts of liger-kernel used here (one seam: tests substitute plain-torch stand-ins on CPU)."""

    rope: Callable  # (q, k, cos, sin, ...) -> (q, k), transformers' apply_rotary_pos_emb contract
    patch_norm: Callable[[torch.nn.Module], None]
    patch_mlp: Callable[[torch.nn.Module], None]
    loss: Callable  # (hidden, weight, targets, chunk, dtype) -> summed NLL


def liger_api(ctx) -> LigerAPI:
    if not ctx.on_cuda:
        raise StackError("liger needs a CUDA GPU (Triton kernels); drop liger, or use cce for the fused loss")
    try:
        from liger_kernel.transformers import LigerSwiGLUMLP
        from liger_kernel.transformers.functional import liger_fused_linear_cross_entropy
        from liger_kernel.transformers.monkey_patch import _patch_rms_norm_module, _patch_swiglu_module
        from liger_kernel.transformers.rope import liger_rotary_pos_emb
    except ImportError:
        raise StackError("liger needs liger-kernel: pip install 'memfit[kernels]'") from None

    def loss(hidden, weight, targets, chunk, dtype):
        return liger_fused_linear_cross_entropy(hidden.reshape(-1, hidden.shape[-1]).to(dtype), weight.to(dtype),
                                                targets.reshape(-1), ignore_index=-100, reduction="sum").float()

    return LigerAPI(liger_rotary_pos_emb, _patch_rms_norm_module, lambda mlp: _patch_swiglu_module(mlp, LigerSwiGLUMLP),
                    loss)


class _LigerRope(Wrapper):
    """Swapped in for one attention module: its family's module-level RoPE is Liger's during this call only."""

    def __init__(self, inner: torch.nn.Module, rope: Callable):
        super().__init__(inner)
        self.rope, self.modeling = rope, sys.modules[type(inner).__module__]

    def forward(self, *args, **kwargs):
        original = getattr(self.modeling, ROPE_FUNCTION)
        setattr(self.modeling, ROPE_FUNCTION, self.rope)
        try:
            return self.inner(*args, **kwargs)
        finally:
            setattr(self.modeling, ROPE_FUNCTION, original)


class _InstancePatches:
    """Per-instance rebinding by Liger's patchers, recorded so that restore_model can take it back."""

    def __init__(self):
        self.added: list[tuple[torch.nn.Module, set[str]]] = []

    def apply(self, module: torch.nn.Module, patch: Callable[[torch.nn.Module], Any]) -> None:
        before, class_name = set(module.__dict__), type(module).__name__
        patch(module)
        # recent Liger also renames the module's *class* (for its repr): that is every model's class, put it back
        type(module).__name__ = class_name
        self.added.append((module, set(module.__dict__) - before))  # forward, extra_repr, the kernel's settings

    def undo(self) -> None:
        for module, keys in reversed(self.added):
            for key in keys:
                module.__dict__.pop(key, None)
        self.added.clear()


@register_strategy(aliases=("liger",))
class LigerKernels(BaseModel):
    model_config = strategy_config()
    name: ClassVar[str] = "liger_kernels"
    phase: ClassVar[int] = PHASE_LOSS
    # auto-search metadata (planner-auto's Protocol attributes): exact; Liger publishes ~+20 % throughput on Llama
    speed_cost: ClassVar[float] = 0.85
    requires: ClassVar[frozenset[str]] = frozenset({"cuda"})

    def describe(self) -> str:
        return "Liger-Kernel Triton kernels on this model: RMSNorm, SwiGLU, RoPE, fused linear cross-entropy"

    def spec_item(self) -> str:
        return "liger"

    def check(self, stack) -> None:
        # Measured on the H200 (benchmarks/results/h200-2026-12-02): inductor cannot trace Liger's Triton kernels (it
        # falls back with CompilationErrors), and with checkpointing the combination fails in backward ("modified by
        # an inplace operation"). Refused at construction, so the auto search never builds it either.
        if "compile" in stack:
            raise StackError("liger's Triton kernels do not run inside torch.compile (inductor cannot trace them; with "
                             "'gc' backward fails on an in-place write): use liger or compile, not both")
        if "offload" in stack:
            raise StackError("liger's in-place cross-entropy breaks under activation offload; "
                             "use offload+cce instead of offload+liger")

    def transform_model(self, model, ctx):
        api = liger_api(ctx)
        family = family_of(parts.causal_lm(model).config).name
        if family not in LIGER_FAMILIES:
            raise StackError(f"liger's Llama kernels do not compute {family}'s norms/MLP exactly (memfit applies them "
                             f"to {', '.join(sorted(LIGER_FAMILIES))}): drop liger, or use cce for the fused loss")
        patches = _InstancePatches()
        for layer in parts.decoder_layers(model):
            for norm in parts.norms(layer).values():
                patches.apply(norm, api.patch_norm)
            patches.apply(parts.layer_mlp(layer), api.patch_mlp)
            attention = parts.layer_attention(layer)
            if not hasattr(sys.modules[type(attention).__module__], ROPE_FUNCTION):
                raise StackError(f"{type(attention).__name__} does not call transformers' {ROPE_FUNCTION}: liger's "
                                 f"RoPE cannot be applied; drop liger, or use cce for the fused loss")
            wrap(layer, "self_attn", lambda attn: _LigerRope(attn, api.rope))
        patches.apply(parts.final_norm(model), api.patch_norm)
        parent, head = parts.lm_head_owner(model)
        wrap(parent, head, lambda lm_head: LossHead(lm_head, 0, ctx.compute_dtype, api.loss))
        model._memfit_liger_patches = patches
        return model

    def restore_model(self, model, ctx):
        model.__dict__.pop("_memfit_liger_patches").undo()
        unwrap_all(model, _LigerRope)
        return unwrap_all(model, LossHead)

    def compute_loss(self, model, batch, ctx):
        return head_loss(model, batch)
