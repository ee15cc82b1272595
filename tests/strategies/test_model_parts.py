"""_model_parts finds the decoder layers, attention, MLP, norms, final norm and lm_head of every supported family
through the model's own structure (and through a peft wrapper), and reads each family's projection names off it."""

from __future__ import annotations

import pytest
import torch

from memfit.core.families import UnsupportedFamily, family_of
from memfit.strategies import _model_parts as parts

SMALL = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
             num_key_value_heads=2, head_dim=8, pad_token_id=0, bos_token_id=1, eos_token_id=2)
LLAMA_ATTN, LLAMA_MLP = ["q_proj", "k_proj", "v_proj", "o_proj"], ["gate_proj", "up_proj", "down_proj"]
FAMILIES = {  # model_type -> (attention projections, MLP projections, layer norms)
    "llama": (LLAMA_ATTN, LLAMA_MLP, ["input_layernorm", "post_attention_layernorm"]),
    "mistral": (LLAMA_ATTN, LLAMA_MLP, ["input_layernorm", "post_attention_layernorm"]),
    "qwen2": (LLAMA_ATTN, LLAMA_MLP, ["input_layernorm", "post_attention_layernorm"]),
    "qwen3": (LLAMA_ATTN, LLAMA_MLP, ["input_layernorm", "post_attention_layernorm"]),
    "gemma2": (LLAMA_ATTN, LLAMA_MLP, ["input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                                       "post_feedforward_layernorm"]),
    "gemma3_text": (LLAMA_ATTN, LLAMA_MLP, ["input_layernorm", "post_attention_layernorm",
                                            "pre_feedforward_layernorm", "post_feedforward_layernorm"]),
    "phi3": (["o_proj", "qkv_proj"], ["gate_up_proj", "down_proj"], ["input_layernorm", "post_attention_layernorm"]),
}


def tiny_family_model(model_type: str) -> torch.nn.Module:
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **SMALL))


@pytest.mark.parametrize("model_type", sorted(FAMILIES))
def test_parts_of_every_family_are_found_through_the_model(model_type):
    attn, mlp, layer_norms = FAMILIES[model_type]
    model = tiny_family_model(model_type)
    layers = parts.decoder_layers(model)
    assert layers == list(model.model.layers) and len(layers) == 3
    assert family_of(model.config).name == model_type
    assert sorted(parts.projection_names(model, "attention")) == sorted(attn)
    assert parts.projection_names(model, "mlp") == mlp
    assert parts.layer_attention(layers[1]) is model.model.layers[1].self_attn
    assert parts.layer_mlp(layers[1]) is model.model.layers[1].mlp
    assert sorted(parts.norms(layers[0])) == sorted(layer_norms)
    assert parts.final_norm(model) is model.model.norm
    assert parts.lm_head(model) is model.lm_head and parts.lm_head_owner(model) == (model, "lm_head")
    q_k_norms = model_type in ("qwen3", "gemma3_text")
    assert bool(parts.norms(parts.layer_attention(layers[0]))) == q_k_norms


def test_parts_are_found_through_peft_and_the_projection_names_stay_the_family_ones():
    from peft import LoraConfig, get_peft_model

    model = tiny_family_model("phi3")
    wrapped = get_peft_model(model, LoraConfig(r=2, target_modules=["qkv_proj", "gate_up_proj"]))
    assert parts.causal_lm(wrapped) is model
    assert parts.decoder_layers(wrapped) == list(model.model.layers)
    assert parts.projection_names(wrapped, "mlp") == ["gate_up_proj", "down_proj"]  # LoRA layers still count


def test_multimodal_gemma3_decoder_is_its_language_model():
    from transformers import AutoConfig, AutoModelForCausalLM

    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=28,
                  patch_size=14)
    config = AutoConfig.for_model("gemma3", text_config=SMALL, vision_config=vision)
    model = AutoModelForCausalLM.from_config(config)
    with pytest.raises(UnsupportedFamily, match="multimodal Gemma 3"):  # memfit refuses to load it (families.py)
        family_of(model.config)
    assert len(parts.decoder_layers(model)) == 3 and parts.final_norm(model) is parts.decoder(model).norm
