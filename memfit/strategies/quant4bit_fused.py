"""The 4-bit layers computed by memfit's fused op (memfit/ops/nf4_lora.py) instead of peft's LoRA over bitsandbytes'
`matmul_4bit`: each adapted linear and its LoRA branch in one autograd Function, the frozen 4-bit linears LoRA does
not adapt through the same Function without the branch, dequantization through bnb's torch.library ops, so
`compile` traces a decoder layer without graph breaks. Same weights, same numbers (tests/ops/test_nf4_lora.py holds
it to bnb's path), the adapter saves, loads and merges exactly as before. Compiled or not, backward keeps the packed
weight and dequantizes again (unless keep_weight), so the memory terms below hold under `compile` too; before the
backward had its own dequantize op, the compiled graph kept every layer's 16-bit W (memfit/ops/nf4_lora.py).

A strategy of its own rather than a `quant4bit` option: it acts on the layers peft creates, after the adapter phase,
while quant4bit acts at load time, and a strategy's hooks run once, in its phase.

The layers change class in place (a subclass of peft's / bnb's own) rather than being wrapped (memfit.core.wrapping):
peft finds its LoRA layers by isinstance for `disable_adapter`, `merge_and_unload` and `set_adapter`, and a wrapper
would hide them, so the base model's perplexity would silently keep the adapter. The subclass falls back to its
parent's forward wherever the fused path does not apply (adapters disabled or merged, several active adapters,
DoRA and other variants, bnb's CPU inference packing), and `restore_model` puts the original classes back.
"""

from __future__ import annotations

import functools
from typing import ClassVar

from pydantic import BaseModel

from ..core.protocol import PHASE_ADAPTER, StackError, strategy_config
from ..core.families import FAMILIES
from ..core.registry import register_strategy
from ..ops.nf4_lora import nf4_linear
from ._model_parts import projection_shapes

def _state(base):
    """The module's usable quant state, or None where the fused path must not run (bnb's CPU inference repacking)."""
    from bitsandbytes.nn.modules import fix_4bit_weight_quant_state_from_module

    fix_4bit_weight_quant_state_from_module(base)  # FSDP-style param conversions drop it; bnb restores it so
    state = base.weight.quant_state
    return None if getattr(state, "packing_format_for_cpu", False) else state


def _compute_dtype(base, x):
    return base.compute_dtype or x.dtype


@functools.cache
def fused_classes(keep_weight: bool) -> dict[type, type]:
    """{original class: fused subclass} for peft's bnb LoRA layer and bnb's Linear4bit (built once per setting)."""
    import bitsandbytes as bnb
    from peft.tuners.lora.bnb import Linear4bit as LoRALinear4bit

    class FusedLoRALinear4bit(LoRALinear4bit):
        def forward(self, x, *args, **kwargs):
            names = self.active_adapters
            name = names[0] if len(names) == 1 else None
            base = self.base_layer
            state = _state(base)
            if (args or kwargs or self.disable_adapters or self.merged or name not in self.lora_A
                    or name in self.lora_variant or self.lora_bias.get(name, False) or state is None):
                return super().forward(x, *args, **kwargs)
            xc = x.to(_compute_dtype(base, x))
            bias = None if base.bias is None else base.bias.to(xc.dtype)
            lora = (self.lora_dropout[name](xc), self.lora_A[name].weight, self.lora_B[name].weight,
                    self.scaling[name])
            return nf4_linear(xc, base.weight, state, bias, keep_weight, lora).to(x.dtype)

    class FusedLinear4bit(bnb.nn.Linear4bit):
        def forward(self, x):
            state = _state(self)
            if state is None:
                return super().forward(x)
            xc = x.to(_compute_dtype(self, x))
            bias = None if self.bias is None else self.bias.to(xc.dtype)
            return nf4_linear(xc, self.weight, state, bias, keep_weight).to(x.dtype)

    return {LoRALinear4bit: FusedLoRALinear4bit, bnb.nn.Linear4bit: FusedLinear4bit}


def _inside_lora(model) -> set[int]:
    """ids of the bnb layers peft's LoRA layers hold as base_layer (those run inside the fused LoRA layer)."""
    from peft.tuners.lora.bnb import Linear4bit as LoRALinear4bit

    return {id(m.base_layer) for m in model.modules() if isinstance(m, LoRALinear4bit)}


@register_strategy(aliases=("q4fused",))
class Quant4bitFused(BaseModel):
    model_config = strategy_config()
    name: ClassVar[str] = "quant4bit_fused"
    phase: ClassVar[int] = PHASE_ADAPTER + 5  # after peft created its 4-bit LoRA layers, before checkpoint/compile
    # A prior for the probing order only, beside quant4bit's 1.3: the fused layer removes peft's output clone and fp32
    # input copies and the separate LoRA kernels, not the dequantization itself (keep_weight saves one pass per
    # checkpointed layer). Unmeasured on a GPU: benchmarks/README.md, "Not yet run".
    speed_cost: ClassVar[float] = 0.85
    requires: ClassVar[frozenset[str]] = frozenset({"bitsandbytes"})

    # Save each dequantized weight for backward instead of dequantizing again (see memfit/ops/nf4_lora.py): free in
    # checkpointed layers (one layer's 16-bit weights, transient), 16-bit weights for every uncheckpointed layer.
    keep_weight: bool = False

    def describe(self) -> str:
        keep = "kept for backward" if self.keep_weight else "dequantized again in backward"
        return f"4-bit linears and their LoRA branch in one fused op, compile-traceable (dequantized weight {keep})"

    def check(self, stack) -> None:
        if "quant4bit" not in stack:
            raise StackError("quant4bit_fused computes quant4bit's 4-bit layers: add 'q4' (e.g. 'lora+q4+q4fused+bf16')")

    def check_launch(self, stack, launch) -> list[str]:
        # ZeRO-3/FSDP hand the layer gathered or sharded parameter objects the fused op was never run on (bnb restores
        # its quant state on them; nothing here tested that): refuse rather than guess
        if launch.sharded_weights:
            raise StackError("quant4bit_fused runs on one process or under DDP / ZeRO-1/2 only: drop 'q4fused' from the "
                             "stack under ZeRO-3 or FSDP (quant4bit alone supports them)")
        return []

    def transform_model(self, model, ctx):
        classes = fused_classes(self.keep_weight)
        inside = _inside_lora(model)
        swapped = 0
        for module in model.modules():
            fused = classes.get(type(module))
            if fused is not None and id(module) not in inside:
                module.__class__ = fused
                swapped += 1
        if not swapped:
            raise ValueError(f"quant4bit_fused found no 4-bit layers in {type(model).__name__}: the model was not "
                             f"loaded in 4 bits (is 'q4' in the stack?)")
        return model

    def restore_model(self, model, ctx):
        back = {fused: original for original, fused in fused_classes(self.keep_weight).items()}
        for module in model.modules():
            if type(module) in back:
                module.__class__ = back[type(module)]
        return model

    def estimate_memory(self, est, ctx):
        lora = ctx.stack.get("lora")
        if lora is not None:  # the adapted modules' saved inputs replace peft's per-module fp32-cast copies
            targets, dropout, rank = set(lora.resolved_targets(FAMILIES[est.family])), lora.dropout > 0, lora.r
            est.set_term("projections", "layer_attn", lambda e: _saved_inputs(e, targets, dropout, rank), self.name)
        est.set_term("dequantized_weights", "transient" if not self.keep_weight else "static",
                     lambda e: _dequantized(e, self.keep_weight), self.name)


def _saved_inputs(e, targets: set[str], dropout: bool, rank: int) -> float:
    """Per token per layer: the dropped-out input of each adapted module (plus its dropout mask), or, without
    dropout, the input itself, one tensor shared by the modules that read it (q/k/v, gate/up); and each module's
    r-wide x A^T, which B's gradient needs."""
    shapes = projection_shapes(e)
    adapters = e.compute_bytes * rank * sum(t in shapes for t in targets)
    if dropout:
        mask = 2 if e.facts.get("elementwise_recomputed") else 1
        return float(sum((e.compute_bytes + mask) * shapes[t][0] for t in targets if t in shapes) + adapters)
    inputs = {"attn_in" if t in ("q_proj", "k_proj", "v_proj") else "mlp_in" if t in ("gate_proj", "up_proj") else t:
              shapes[t][0] for t in targets if t in shapes}
    return float(e.compute_bytes * sum(inputs.values()) + adapters)


def _dequantized(e, keep_weight: bool) -> float:
    """16-bit copies of dequantized weights alive at the peak: the largest single weight (dequantized, used, freed),
    or with keep_weight every uncheckpointed layer's weights plus one checkpointed layer's (its recompute's)."""
    if not keep_weight:
        family, shapes = FAMILIES[e.family], projection_shapes(e)
        names = family.attention_projections + family.mlp_projections
        return float(max(shapes[n][0] * shapes[n][1] for n in names) * e.compute_bytes)
    layer = e.linear_params / e.n_layers * e.compute_bytes
    return float((e.n_layers - e.checkpointed_layers) * layer + (layer if e.checkpointed_layers else 0))
