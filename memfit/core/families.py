"""The decoder families memfit supports, and what differs between them that a strategy or the memory model must know.

Every family here is a LLaMA-style decoder (RMSNorm, RoPE, grouped-query attention, gated MLP) that transformers
ships; they differ in the details listed per family: fused projections (Phi-3), attention bias (Qwen2), q/k norms
(Qwen3, Gemma 3), GeGLU and four norms per layer with scaled embeddings (Gemma), soft-capped logits (Gemma 2) and
sliding-window layers. A family not listed is refused (`family_of`): building it as a Llama would train the wrong
model silently. Only plain data and config reading here: nothing imports transformers.
"""

from __future__ import annotations

from dataclasses import dataclass

SEPARATE_ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
SEPARATE_MLP = ("gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class Family:
    name: str  # config.model_type; the owner of the family's memory terms
    title: str
    attention_projections: tuple[str, ...] = SEPARATE_ATTENTION  # the Linear layers LoRA's 'attention' preset takes
    mlp_projections: tuple[str, ...] = SEPARATE_MLP
    gated_activation: str = "swiglu"  # swiglu: silu(gate) * up; geglu: gelu_tanh(gate) * up
    qkv_bias: bool = False  # q/k/v projections carry a bias whatever config.attention_bias says (Qwen2)
    qk_norm: bool = False  # RMSNorm over each head of q and k before RoPE (Qwen3, Gemma 3)
    norms_per_layer: int = 2  # Gemma: pre- and post-norm around both attention and MLP
    scaled_embeddings: bool = False  # embeddings multiplied by sqrt(hidden) in the model's forward (Gemma)
    windowed: bool = True  # honours config.sliding_window (Llama ignores the field)
    attention: str = "sdpa"  # the attention implementation memfit loads the family with
    attention_why: str = ""

    @property
    def fused(self) -> bool:
        return "qkv_proj" in self.attention_projections

    def lora_presets(self) -> dict[str, tuple[str, ...]]:
        return {"attention": self.attention_projections, "mlp": self.mlp_projections,
                "all-linear": self.attention_projections + self.mlp_projections}


_GEMMA = dict(gated_activation="geglu", norms_per_layer=4, scaled_embeddings=True)
FAMILIES = {f.name: f for f in (
    Family("llama", "Llama 3.x", windowed=False),
    Family("mistral", "Mistral"),
    Family("qwen2", "Qwen2/2.5", qkv_bias=True),
    Family("qwen3", "Qwen3", qk_norm=True),
    Family("gemma2", "Gemma 2", attention="eager", **_GEMMA,
           attention_why="transformers refuses SDPA for Gemma 2: SDPA cannot soft-cap the attention logits"),
    Family("gemma3_text", "Gemma 3 (text)", qk_norm=True, **_GEMMA),
    Family("phi3", "Phi-3/3.5", attention_projections=("qkv_proj", "o_proj"),
           mlp_projections=("gate_up_proj", "down_proj")),
)}

# model types that look close but need what memfit does not have; said instead of a generic refusal
NEAR_MISSES = {
    "gemma3": "multimodal Gemma 3 (a vision tower around the text decoder): use a text-only Gemma 3 "
              "(model_type gemma3_text, e.g. gemma-3-1b) or its text_config",
    "gemma": "Gemma 1 (GeGLU without Gemma 2's norms) has no memory terms or tests here: use Gemma 2 or 3",
    "phi": "Phi-1/2 (parallel attention and MLP, LayerNorm) is not a LLaMA-style decoder: use Phi-3/3.5",
}


class UnsupportedFamily(ValueError):
    """A config of a family memfit does not build, plan or adapt; the message names what is missing."""


def family_of(config) -> Family:
    """The family of a transformers config (or anything with .model_type); refused in one line if unsupported."""
    model_type = getattr(config, "model_type", None) or ""
    if model_type in FAMILIES:
        return FAMILIES[model_type]
    supported = ", ".join(FAMILIES)
    why = NEAR_MISSES.get(model_type) or (
        f"memfit has no description of its layers (LoRA targets, MLP, memory terms)" if model_type
        else "the config names no model_type: add \"model_type\" (e.g. \"llama\") to it")
    raise UnsupportedFamily(f"model family {model_type or '(none)'!r} is not supported: {why}; "
                            f"supported families: {supported}")


def qkv_bias(config) -> bool:
    return family_of(config).qkv_bias or bool(getattr(config, "attention_bias", False))


def final_logit_softcap(config) -> float | None:
    return getattr(config, "final_logit_softcapping", None) or None


def attention_logit_softcap(config) -> float | None:
    return getattr(config, "attn_logit_softcapping", None) or None


def sliding_window(config) -> int | None:
    return getattr(config, "sliding_window", None) if family_of(config).windowed else None


def sliding_layers(config) -> int:
    """How many layers attend within a sliding window (their masks differ from the full-attention layers')."""
    if not sliding_window(config):
        return 0
    types = getattr(config, "layer_types", None)
    if types:
        return sum(t == "sliding_attention" for t in types)
    return config.num_hidden_layers if getattr(config, "use_sliding_window", True) else 0
