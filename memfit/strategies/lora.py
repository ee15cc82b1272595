"""LoRA adapters through peft: the base model is frozen, only low-rank A/B matrices train.

Targets are Linear layer names or presets resolved per family (memfit/core/families.py): 'attention' (q/k/v/o, or
Phi-3's fused qkv_proj/o_proj), 'mlp' (gate/up/down, or Phi-3's gate_up_proj/down_proj) and 'all-linear' (both).
A name the model does not have is refused with the model's real names, never silently skipped."""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import BaseModel, Field, field_validator

from ..core.families import FAMILIES, Family, family_of
from ..core.protocol import PHASE_ADAPTER, StackError, strategy_config
from ..core.registry import register_strategy
from ._model_parts import projection_shapes


@register_strategy
class LoRA(BaseModel):
    model_config = strategy_config()
    name: ClassVar[str] = "lora"
    phase: ClassVar[int] = PHASE_ADAPTER
    auto_candidate: ClassVar[bool] = False  # the fine-tune method is the user's choice
    shorthand: ClassVar[str] = "r"
    freezes_base: ClassVar[bool] = True

    r: int = Field(8, gt=0)
    alpha: float = Field(32.0, gt=0)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    # Linear layer names or the presets 'attention', 'mlp', 'all-linear' (one name alone is accepted: targets=q_proj)
    targets: list[str] = Field(default_factory=lambda: ["attention"], min_length=1)

    @field_validator("targets", mode="before")
    @classmethod
    def _one_name(cls, value):
        return [value] if isinstance(value, str) else value

    def describe(self) -> str:
        return f"LoRA r={self.r} alpha={self.alpha:g} dropout={self.dropout:g} on {'/'.join(self.targets)}; base frozen"

    def resolved_targets(self, family: Family) -> list[str]:
        """The Linear layer names the targets mean in `family` (presets expanded, order kept, no repeats)."""
        presets = family.lora_presets()
        return list(dict.fromkeys(name for t in self.targets for name in presets.get(t, (t,))))

    def transform_model(self, model, ctx):
        from peft import LoraConfig, get_peft_model

        family = family_of(model.config)
        targets = self.resolved_targets(family)
        linears = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules()
                          if isinstance(m, torch.nn.Linear) and n.rsplit(".", 1)[-1] != "lm_head"})
        missing = [t for t in targets if t not in linears]
        if missing:
            raise StackError(f"LoRA target(s) {', '.join(missing)} do not exist in {type(model).__name__} (family "
                             f"{family.name}); its Linear layers are {', '.join(linears)}, or use a preset: "
                             f"{', '.join(family.lora_presets())}")
        cfg = LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout, target_modules=targets,
                         bias="none", task_type="CAUSAL_LM")
        # Adapters stay fp32 (peft's default autocast_adapter_dtype): they are the only trained weights and
        # are tiny, so fp32 masters cost nothing and let the fp16 loss scaler unscale their gradients.
        return get_peft_model(model, cfg)

    def restore_model(self, model, ctx):
        return model.unload()  # peft's own undo: the base model with its original Linear layers, adapters dropped

    def estimate_memory(self, est, ctx):
        family = FAMILIES[est.family]
        shapes = projection_shapes(est)
        targets = self.resolved_targets(family)
        unknown = [t for t in targets if t not in family.attention_projections + family.mlp_projections]
        if unknown:
            raise StackError(f"LoRA target(s) {', '.join(unknown)} do not exist in a {family.title} model; its "
                             f"projections are {', '.join(family.attention_projections + family.mlp_projections)}, "
                             f"or use a preset: {', '.join(family.lora_presets())}")
        est.set_trainable(est.n_layers * sum(self.r * sum(shapes[t]) for t in targets), bytes_per_param=4)
        est.set_term("projections", "layer_attn", lambda e: self._saved_inputs(e, targets), self.name)

    def _saved_inputs(self, est, targets: list[str]) -> float:
        """Frozen base: each LoRA A keeps its own copy of its input (peft casts x to the fp32 adapter dtype and
        autocast casts it back, per module), plus the dropout mask (1 byte; 2 per element measured compiled); each
        LoRA B keeps its r-wide input."""
        mask = (2 if est.facts.get("elementwise_recomputed") else 1) if self.dropout > 0 else 0
        shapes = projection_shapes(est)
        inputs = sum(shapes[t][0] for t in targets)
        return float((est.compute_bytes + mask) * inputs + est.compute_bytes * self.r * len(targets))

