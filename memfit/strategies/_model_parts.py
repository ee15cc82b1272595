"""Where the parts of a causal LM are, for every strategy that changes one of them: the decoder layers, each layer's
attention, MLP and norms, the final norm and the lm_head.

Found through the model's own structure (transformers' `get_decoder()` / `.model`, then `.layers`, `.self_attn`,
`.mlp`, `.norm`, `get_output_embeddings()`), never by class name, so the same code serves Llama, Mistral, Qwen2,
Qwen3, Gemma 2/3 (even Gemma 3's multimodal wrapper, whose decoder is its language model, though memfit refuses to
load one) and Phi-3, through a peft wrapper as well. What differs per family is read off the modules: which
projections exist (Phi-3 fuses q/k/v into `qkv_proj` and gate/up into `gate_up_proj`), which norms a layer has
(Gemma adds pre/post feed-forward norms, Qwen3 and Gemma 3 norm q and k). The family itself is
`memfit.core.families.family_of(config)`.
"""

from __future__ import annotations

from typing import Literal

import torch

from ..core.wrapping import unwrap_peft


def causal_lm(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers *ForCausalLM (or multimodal *ForConditionalGeneration) inside any peft wrapper."""
    return unwrap_peft(model)


def decoder(model: torch.nn.Module) -> torch.nn.Module | None:
    """The module holding the decoder layers (LlamaModel, Gemma3TextModel, ...), or None when there is none."""
    base = causal_lm(model)
    candidates = []
    if callable(getattr(base, "get_decoder", None)):
        try:
            candidates.append(base.get_decoder())
        except (AttributeError, NotImplementedError):  # older transformers: not every class implements it
            pass
    inner = getattr(base, "model", None)
    candidates += [inner, getattr(inner, "language_model", None), base]  # multimodal: the text decoder
    return next((c for c in candidates if isinstance(getattr(c, "layers", None), torch.nn.ModuleList)), None)


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The repeated decoder blocks, in order (works through peft wrappers)."""
    owner = decoder(model)
    if owner is not None:
        return list(owner.layers)
    # no `.layers` list: the blocks transformers knows how to checkpoint, in module order
    from transformers.modeling_layers import GradientCheckpointingLayer

    layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
    if not layers:
        raise ValueError(f"{type(causal_lm(model)).__name__} has no decoder layers memfit can find (no "
                         f"`.model.layers` and no transformers GradientCheckpointingLayer)")
    return layers


def layer_attention(layer: torch.nn.Module) -> torch.nn.Module | None:
    return getattr(layer, "self_attn", None)


def layer_mlp(layer: torch.nn.Module) -> torch.nn.Module | None:
    return getattr(layer, "mlp", None)


def norms(module: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """A module's own norm children by name (input_layernorm, post_attention_layernorm, Gemma's pre/post feed-forward
    norms; q_norm/k_norm of an attention): transformers names every norm '...norm'."""
    return {name: child for name, child in module.named_children() if name.endswith("norm")}


def final_norm(model: torch.nn.Module) -> torch.nn.Module | None:
    owner = decoder(model)
    return getattr(owner, "norm", None) if owner is not None else None


def lm_head_owner(model: torch.nn.Module) -> tuple[torch.nn.Module, str]:
    """(parent, attribute) of the output projection, for strategies that swap it (`core.wrapping.wrap`)."""
    base = causal_lm(model)
    if isinstance(getattr(base, "lm_head", None), torch.nn.Module):
        return base, "lm_head"
    raise ValueError(f"{type(base).__name__} has no lm_head: memfit needs a *ForCausalLM model")


def lm_head(model: torch.nn.Module) -> torch.nn.Module:
    parent, name = lm_head_owner(model)
    return getattr(parent, name)


def projection_names(model: torch.nn.Module, part: Literal["attention", "mlp"]) -> list[str]:
    """Names of the linear projections of the first layer's attention or MLP, as this family has them:
    ['q_proj', 'k_proj', 'v_proj', 'o_proj'] (Llama) or ['qkv_proj', 'o_proj'] (Phi-3); ['gate_proj', 'up_proj',
    'down_proj'] or ['gate_up_proj', 'down_proj']. Adapters and quantizers target these names."""
    layer = decoder_layers(model)[0]
    module = layer_attention(layer) if part == "attention" else layer_mlp(layer)
    if module is None:
        return []
    return [name for name, child in module.named_children() if _is_linear(child)]


def _is_linear(module: torch.nn.Module) -> bool:
    # peft's LoRA layers and bitsandbytes' Linear4bit/8bitLt are Linear subclasses or wrap one as base_layer
    return isinstance(module, torch.nn.Linear) or isinstance(getattr(module, "base_layer", None), torch.nn.Linear)


def projection_shapes(est) -> dict[str, tuple[int, int]]:
    """(inputs, outputs) per token of every projection an adapter can wrap, in any supported family, from a memory
    estimate's dimensions: LoRA's and the fused 4-bit path's memory terms both count saved inputs with it."""
    h, a, kv, i = est.hidden, est.attention_width, est.kv_width, est.intermediate
    return {"q_proj": (h, a), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (a, h), "qkv_proj": (h, a + 2 * kv),
            "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h), "gate_up_proj": (h, 2 * i)}
