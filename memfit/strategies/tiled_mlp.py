"""Tiled MLP: each decoder layer's MLP runs over chunks of tokens and keeps only its input for backward.

Measured on the H100 (benchmarks/results/README.md, issue 7): with checkpointed layer inputs offloaded to the host,
the next limit at seq 512 x 800 sequences was one layer's recompute working set, led by the 8192-wide MLP
intermediates (gate, up, silu(gate) * up and their gradients: 6.25 GiB each at that size). Here the MLP forward runs
chunk by chunk without a graph, and the backward recomputes one chunk at a time, so those intermediates exist for
`tokens` tokens only. The MLP is per-token, so this is exact: outputs equal, gradients up to summation order.
Cost: the MLP forward runs twice (once more on top of checkpointing's recompute).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import BaseModel, Field

from ..protocol import PHASE_CHECKPOINT, strategy_config
from ..registry import register_strategy
from .gradient_checkpointing import decoder_layers


class TiledMLPFunction(torch.autograd.Function):
    """y = mlp(x) token chunk by token chunk; saves x only. Gradients of the MLP's own trainable parameters (LoRA
    on gate/up/down, or a full fine-tune) are accumulated into their .grad by the per-chunk backward."""

    @staticmethod
    def forward(ctx, mlp, x, tokens: int, *trainable):  # trainable: only so autograd calls back (see backward)
        ctx.mlp, ctx.tokens = mlp, tokens
        dev = x.device.type
        ctx.autocast = (torch.is_autocast_enabled(dev), torch.get_autocast_dtype(dev))
        ctx.save_for_backward(x)
        flat = x.reshape(-1, x.shape[-1])
        with torch.no_grad():
            out = torch.cat([mlp.forward_untiled(c) for c in flat.split(tokens)])
        return out.view(*x.shape[:-1], out.shape[-1])

    @staticmethod
    def backward(ctx, grad_out):
        (x,) = ctx.saved_tensors
        flat = x.detach().reshape(-1, x.shape[-1])
        grads = grad_out.reshape(-1, grad_out.shape[-1])
        grad_x = torch.empty_like(flat) if ctx.needs_input_grad[1] else None
        dev = x.device.type
        for start in range(0, flat.shape[0], ctx.tokens):
            chunk = flat[start:start + ctx.tokens].detach().requires_grad_(grad_x is not None)
            with torch.enable_grad(), torch.autocast(dev, dtype=ctx.autocast[1], enabled=ctx.autocast[0]):
                out = ctx.mlp.forward_untiled(chunk)
            if out.requires_grad:
                torch.autograd.backward(out, grads[start:start + ctx.tokens])
            if grad_x is not None:
                grad_x[start:start + ctx.tokens] = chunk.grad
        # the parameters' gradients were accumulated by the chunk backwards above
        return (None, grad_x.view_as(x) if grad_x is not None else None, None) + (None,) * len(ctx.needs_input_grad[3:])


def _tiled_forward(mlp, x):
    if not torch.is_grad_enabled() or x.shape[:-1].numel() <= mlp.memfit_tile_tokens:
        return mlp.forward_untiled(x)  # evaluation, or a batch no larger than one tile: nothing to save
    trainable = [p for p in mlp.parameters() if p.requires_grad]  # LoRA on gate/up/down, or a full fine-tune
    return TiledMLPFunction.apply(mlp, x, mlp.memfit_tile_tokens, *trainable)


@register_strategy(aliases=("tmlp",))
class TiledMLP(BaseModel):
    model_config = strategy_config()
    name: ClassVar[str] = "tiled_mlp"
    phase: ClassVar[int] = PHASE_CHECKPOINT

    tokens: int = Field(8192, ge=1)  # tokens per chunk: 8192 x 8192-wide bf16 intermediates = 128 MiB each

    def describe(self) -> str:
        return f"each layer's MLP runs in chunks of {self.tokens} tokens, recomputed per chunk in backward"

    def transform_model(self, model, ctx):
        for layer in decoder_layers(model):
            mlp = getattr(layer, "mlp", None)
            if mlp is None or hasattr(mlp, "forward_untiled"):
                continue
            mlp.forward_untiled, mlp.memfit_tile_tokens = mlp.forward, self.tokens
            mlp.forward = _tiled_forward.__get__(mlp)
        return model

    def estimate_memory(self, est, ctx):
        est.mlp_tile_tokens = self.tokens
