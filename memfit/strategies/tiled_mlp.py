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
from torch.utils.checkpoint import checkpoint

from ..core.protocol import PHASE_CHECKPOINT, strategy_config
from ..core.registry import register_strategy
from .gradient_checkpointing import decoder_layers


def _tiled_forward(mlp, x):
    flat = x.reshape(-1, x.shape[-1])
    if not torch.is_grad_enabled() or flat.shape[0] <= mlp.memfit_tile_tokens:
        return mlp.forward_untiled(x)  # evaluation, or a batch no larger than one tile: nothing to save
    # Each chunk is checkpointed: it keeps only its input (a view of x), and autograd runs one chunk's backward
    # (recompute included) before the next, so one chunk's intermediates exist at a time. torch's checkpoint
    # restores autocast and RNG and lets the MLP's own trainable weights (LoRA on gate/up/down) get gradients.
    out = torch.cat([checkpoint(mlp.forward_untiled, c, use_reentrant=False)
                     for c in flat.split(mlp.memfit_tile_tokens)])
    return out.view(*x.shape[:-1], out.shape[-1])


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
        full_projections = est.terms["projections"].bytes
        # only the MLP's input is kept; its linears' inputs are rebuilt per tile (a frozen base saved none of them)
        est.set_term("projections", "layer_attn", lambda e: full_projections(e) - (
            e.compute_bytes * (e.hidden + e.intermediate) if e.trainable_params is None else 0), self.name)
        est.set_term("mlp", "layer_mlp", lambda e: float(e.compute_bytes * e.hidden), self.name)
        est.set_term("mlp_gradients", "working", lambda e: 0.0, self.name)  # they exist per tile only
        # one tile's 3 intermediates + 2 gradients
        est.set_term("mlp_tile", "transient", lambda e: float(self.tokens * 5 * e.intermediate * e.compute_bytes),
                     self.name)
