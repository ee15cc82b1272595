"""Tiled MLP: each decoder layer's MLP runs over chunks of tokens and keeps only its input for backward.

Measured on the H100 (benchmarks/results/README.md, issue 7): with checkpointed layer inputs offloaded to the host,
the next limit at seq 512 x 800 sequences was one layer's recompute working set, led by the 8192-wide MLP
intermediates (gate, up, silu(gate) * up and their gradients: 6.25 GiB each at that size). Here the MLP forward runs
chunk by chunk without a graph, and the backward recomputes one chunk at a time, so those intermediates exist for
`tokens` tokens only. The MLP is per-token, so this is exact: outputs equal, gradients up to summation order.
Cost: the MLP forward runs twice (once more on top of checkpointing's recompute).
Every supported family's MLP is per-token (SwiGLU, Gemma's GeGLU, Phi-3's fused gate_up_proj), so the same wrapper
is exact on each (tests/families/test_exact_strategies.py); the memory terms count gate, up and act(gate) for all of them.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import BaseModel, Field

from ..core.protocol import PHASE_CHECKPOINT, strategy_config
from ..core.registry import register_strategy
from ..core.wrapping import Wrapper, unwrap_all, wrap
from ..ops.tiled_mlp import tiled_mlp
from ._model_parts import decoder_layers, layer_mlp


class TiledMLPModule(Wrapper):
    """Swapped in for a layer's MLP (same parameters and names): runs it `tokens` tokens at a time."""

    def __init__(self, inner: torch.nn.Module, tokens: int):
        super().__init__(inner)
        self.tokens = tokens

    def forward(self, x):
        return tiled_mlp(self.inner, x, self.tokens)


@register_strategy(aliases=("tmlp",))
class TiledMLP(BaseModel):
    model_config = strategy_config()
    name: ClassVar[str] = "tiled_mlp"
    phase: ClassVar[int] = PHASE_CHECKPOINT
    speed_cost: ClassVar[float] = 1.1  # recomputes the MLP tile by tile

    tokens: int = Field(8192, ge=1)  # tokens per chunk: 8192 x 8192-wide bf16 intermediates = 128 MiB each

    def describe(self) -> str:
        return f"each layer's MLP runs in chunks of {self.tokens} tokens, recomputed per chunk in backward"

    def transform_model(self, model, ctx):
        for layer in decoder_layers(model):
            if layer_mlp(layer) is not None:
                wrap(layer, "mlp", lambda mlp: TiledMLPModule(mlp, self.tokens))
        return model

    def restore_model(self, model, ctx):
        return unwrap_all(model, TiledMLPModule)

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
