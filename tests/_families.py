"""Tiny random configs of every supported family for tests (imported as `_families`, like `_models`).

Shapes are small but keep each family's peculiarities visible: grouped-query attention, a sliding window shorter
than the test sequences (Mistral, Gemma), and Gemma 2's final-logit soft-cap low enough (0.5) that a loss which
ignored it would differ by far more than the tolerances."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from _models import random_blocks

FAMILY_TYPES = ("llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3_text", "phi3")
CLASSES = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM",
           "qwen3": "Qwen3ForCausalLM", "gemma2": "Gemma2ForCausalLM", "gemma3_text": "Gemma3ForCausalLM",
           "phi3": "Phi3ForCausalLM"}
SHAPE = dict(hidden_size=64, intermediate_size=96, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
             vocab_size=128, max_position_embeddings=256, pad_token_id=0, bos_token_id=1, eos_token_id=2,
             tie_word_embeddings=False, num_hidden_layers=2)
# 40 tokens: longer than the 16-token sliding windows, so windowed layers differ from full attention
BATCH = {k: torch.tensor([r[k] for r in random_blocks(2, 40)]) for k in ("input_ids", "labels")}
EXTRA = {"mistral": dict(sliding_window=16), "gemma2": dict(sliding_window=16, final_logit_softcapping=0.5),
         "gemma3_text": dict(sliding_window=16), "qwen3": dict(), "phi3": dict()}


def family_values(model_type: str, **overrides) -> dict:
    return {"model_type": model_type, **SHAPE, **EXTRA.get(model_type, {}), **overrides}


def family_config(model_type: str, **overrides):
    from transformers import AutoConfig

    values = family_values(model_type, **overrides)
    return AutoConfig.for_model(values.pop("model_type"), **values)


def family_json(folder: Path, model_type: str, **overrides) -> str:
    path = Path(folder) / f"{model_type}.json"
    path.write_text(json.dumps(family_values(model_type, **overrides)))
    return str(path)


def family_model(model_type: str, seed: int = 0, **overrides):
    """The family's model built the way memfit builds it (its own class, its attention implementation), fp32."""
    from transformers import AutoModelForCausalLM

    from memfit.models import attention_implementation

    config = family_config(model_type, **overrides)
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config, attn_implementation=attention_implementation(config)).float()
