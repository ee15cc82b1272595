"""Liger-Kernel's Triton kernels (RMSNorm, SwiGLU, RoPE, fused linear cross-entropy) on the model instance.

`liger_kernel.transformers.apply_liger_kernel_to_llama` swaps module *classes* for every model in the process;
here the norms and MLPs of this model are patched instance by instance (Liger's own per-module patchers), and the
fused cross-entropy is the lm_head swapped for cce's loss head with Liger's kernel, so nothing else changes.
RoPE is a module-level function in transformers' Llama code, so that one patch is process-wide (and restored).
CUDA only: Triton kernels. Liger's cross-entropy writes gradients in place during forward, which activation
offload's saved-tensor hooks then move to the host as if they were activations: refused, with the fix.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel
from transformers.models.llama import modeling_llama

from ..core.protocol import PHASE_LOSS, StackError, strategy_config
from ..core.registry import register_strategy
from ..core.wrapping import unwrap_all, unwrap_peft, wrap
from .chunked_cross_entropy import ChunkedCrossEntropy, ChunkedLossHead

_ORIGINAL_ROPE = modeling_llama.apply_rotary_pos_emb


def _liger_loss(hidden, weight, targets, chunk, dtype):
    from liger_kernel.transformers.functional import liger_fused_linear_cross_entropy

    return liger_fused_linear_cross_entropy(hidden.reshape(-1, hidden.shape[-1]).to(dtype), weight.to(dtype),
                                            targets.reshape(-1), ignore_index=-100, reduction="sum").float()


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

    def _check(self, ctx):
        if not ctx.on_cuda:
            raise StackError("liger needs a CUDA GPU (Triton kernels); drop liger, or use cce for the fused loss")
        try:
            import liger_kernel  # noqa: F401
        except ImportError:
            raise StackError("liger needs liger-kernel: pip install 'memfit[kernels]'") from None

    def transform_model(self, model, ctx):
        self._check(ctx)
        from liger_kernel.transformers import LigerSwiGLUMLP
        from liger_kernel.transformers.monkey_patch import _patch_rms_norm_module, _patch_swiglu_module
        from liger_kernel.transformers.rope import liger_rotary_pos_emb

        base = unwrap_peft(model)
        for layer in base.model.layers:
            _patch_rms_norm_module(layer.input_layernorm)
            _patch_rms_norm_module(layer.post_attention_layernorm)
            _patch_swiglu_module(layer.mlp, LigerSwiGLUMLP)
        _patch_rms_norm_module(base.model.norm)
        modeling_llama.apply_rotary_pos_emb = liger_rotary_pos_emb
        wrap(base, "lm_head", lambda head: ChunkedLossHead(head, 0, ctx.compute_dtype, _liger_loss))
        return model

    def restore_model(self, model, ctx):
        # Liger's norm/MLP patches rebind forwards of this instance only; the loss head and RoPE are undone here
        modeling_llama.apply_rotary_pos_emb = _ORIGINAL_ROPE
        return unwrap_all(model, ChunkedLossHead)

    compute_loss = ChunkedCrossEntropy.compute_loss
