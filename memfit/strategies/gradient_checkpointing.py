"""Activation checkpointing of decoder layers: keep each layer's input, recompute its inside in backward.

`layers` picks how many of the model's decoder layers are checkpointed (spread evenly); the rest keep their
activations and skip the recompute, trading memory back for speed when memory is not the limit.
"""

from __future__ import annotations

from functools import partial
from typing import ClassVar, Optional

import torch
from pydantic import BaseModel, Field
from torch.utils.checkpoint import checkpoint

from ..core.protocol import PHASE_CHECKPOINT, StackError, strategy_config
from ..core.registry import register_strategy
from ._model_parts import decoder_layers


def spread(n_total: int, n_pick: int) -> list[int]:
    """Indices of n_pick layers spread evenly over n_total (all of them when n_pick >= n_total)."""
    n_pick = max(0, min(n_pick, n_total))
    return sorted({int(i * n_total / n_pick) for i in range(n_pick)}) if n_pick else []


def checkpointed_layers(model) -> list[torch.nn.Module]:
    return [m for m in decoder_layers(model) if getattr(m, "gradient_checkpointing", False)]


def checkpoint_function():
    """torch's non-reentrant checkpoint: what every checkpointed layer runs its inside through, unless a strategy of
    the stack provides the `layer_checkpoint` hook (activation offload: the saved input goes to host memory)."""
    return partial(checkpoint, use_reentrant=False)


@register_strategy(aliases=("gc",))
class GradientCheckpointing(BaseModel):
    model_config = strategy_config()
    name: ClassVar[str] = "gc"
    phase: ClassVar[int] = PHASE_CHECKPOINT
    speed_cost: ClassVar[float] = 1.33  # one extra forward per layer
    shorthand: ClassVar[str] = "layers"
    layer_subset: ClassVar[str] = "layers"  # gc:N checkpoints N layers: the auto search's partial candidates

    layers: Optional[int] = Field(None, ge=0)  # None: every decoder layer

    def check_launch(self, stack, launch) -> list[str]:
        if launch.distributed_type == "FSDP" and launch.fsdp_activation_checkpointing:
            raise StackError("fsdp_activation_checkpointing and the stack's 'gc' would checkpoint every decoder layer "
                             "twice (two recomputes per backward): set fsdp_activation_checkpointing: false in the "
                             "accelerate config (launch_configs/fsdp.yaml does) and keep 'gc'")
        return []

    def describe(self) -> str:
        which = "every decoder layer" if self.layers is None else f"{self.layers} decoder layers (spread evenly)"
        return f"checkpoint {which} (non-reentrant), recomputed in backward"

    def transform_model(self, model, ctx):
        layers = decoder_layers(model)
        from transformers.modeling_layers import GradientCheckpointingLayer

        if not all(isinstance(layer, GradientCheckpointingLayer) for layer in layers):
            raise ValueError(f"{type(layers[0]).__name__} is not a transformers GradientCheckpointingLayer: "
                             f"gradient checkpointing cannot be applied to this model; drop 'gc'")
        chosen = set(spread(len(layers), len(layers) if self.layers is None else self.layers))
        func = ctx.stack.layer_checkpoint(model, ctx) or checkpoint_function()
        for i, layer in enumerate(layers):
            layer.gradient_checkpointing = i in chosen
            layer._gradient_checkpointing_func = func
        # Set flags directly rather than through gradient_checkpointing_enable, whose name and arguments differ
        # across transformers 5.x; the layer-level attributes are what its forward actually reads.
        return model

    def restore_model(self, model, ctx):
        for layer in decoder_layers(model):
            layer.gradient_checkpointing = False
            layer.__dict__.pop("_gradient_checkpointing_func", None)
        return model

    def estimate_memory(self, est, ctx):
        est.checkpointed_layers = est.n_layers if self.layers is None else min(self.layers, est.n_layers)
