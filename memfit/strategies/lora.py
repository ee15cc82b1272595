"""LoRA adapters through peft: the base model is frozen, only low-rank A/B matrices train."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, Field

from ..core.protocol import PHASE_ADAPTER, strategy_config
from ..core.registry import register_strategy


@register_strategy
class LoRA(BaseModel):
    model_config = strategy_config()
    name: ClassVar[str] = "lora"
    phase: ClassVar[int] = PHASE_ADAPTER
    shorthand: ClassVar[str] = "r"
    freezes_base: ClassVar[bool] = True

    r: int = Field(8, gt=0)
    alpha: float = Field(32.0, gt=0)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    targets: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"], min_length=1)

    def describe(self) -> str:
        return f"LoRA r={self.r} alpha={self.alpha:g} dropout={self.dropout:g} on {'/'.join(self.targets)}; base frozen"

    def transform_model(self, model, ctx):
        from peft import LoraConfig, get_peft_model

        missing = [t for t in self.targets if not any(n.endswith(t) for n, _ in model.named_modules())]
        if missing:
            raise ValueError(f"LoRA target modules {missing} do not exist in {type(model).__name__}; "
                             f"pick from the model's Linear layers (e.g. q_proj, k_proj, v_proj, o_proj, gate_proj)")
        cfg = LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout, target_modules=list(self.targets),
                         bias="none", task_type="CAUSAL_LM")
        # Adapters stay fp32 (peft's default autocast_adapter_dtype): they are the only trained weights and
        # are tiny, so fp32 masters cost nothing and let the fp16 loss scaler unscale their gradients.
        return get_peft_model(model, cfg)

    def estimate_memory(self, est, ctx):
        est.set_trainable(self._params(est), bytes_per_param=4)
        est.set_term("projections", "layer_attn", self._saved_inputs, self.name)

    def _params(self, est) -> int:
        h, a, kv, i = est.hidden, est.attention_width, est.kv_width, est.intermediate
        shapes = {"q_proj": (h, a), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (a, h),
                  "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}
        return est.n_layers * sum(self.r * (n_in + n_out) for t, (n_in, n_out) in shapes.items() if t in self.targets)

    def _saved_inputs(self, est) -> float:
        """Frozen base: each LoRA A keeps its own copy of its input (peft casts x to the fp32 adapter dtype and
        autocast casts it back, per module), plus the dropout mask (1 byte; 2 per element measured compiled)."""
        mask = (2 if est.facts.get("elementwise_recomputed") else 1) if self.dropout > 0 else 0
        return float((est.compute_bytes + mask) * (3 * est.hidden + est.attention_width))
