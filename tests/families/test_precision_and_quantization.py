"""bf16 autocast, 4-bit and 8-bit weights (quantized while loading saved weights, with LoRA) and 8-bit Adam on every
family: each family's own projections are quantized (Phi-3's fused qkv_proj / gate_up_proj too), and two training
steps stay within the method's rounding of fp32 LoRA on the same weights (bitsandbytes' CPU kernels)."""

from __future__ import annotations

import pytest

import memfit
from memfit import Stack, TrainConfig
from memfit.models import load_model
from memfit.strategies import _model_parts as parts
from _families import FAMILY_TYPES, family_model
from _models import random_blocks

# added to lora: the relative tolerance of its two losses against fp32 LoRA's (measured: <= 1e-3 for q4, far less
# for the others); the quantized layer class each projection must carry
LOADED = {"bf16": (1e-3, None), "q8": (5e-3, "Linear8bitLt"), "q4": (1e-2, "Linear4bit"), "adam8": (1e-3, None)}


def _losses(weights, spec):
    stack = Stack.from_spec(spec)
    model = load_model(weights, stack)
    losses = memfit.train(model, stack, random_blocks(4, 32), TrainConfig(micro_batch=2, max_steps=2, lr=1e-2,
                                                                          warmup=0, progress=False)).losses
    return model, losses


@pytest.mark.parametrize("model_type", FAMILY_TYPES)
def test_bf16_quantized_weights_and_adam8_train_close_to_fp32_lora(tmp_path, model_type):
    family_model(model_type).save_pretrained(tmp_path)
    _, reference = _losses(str(tmp_path), "lora:targets=all-linear,dropout=0")
    for extra, (rel, layer_class) in LOADED.items():
        model, losses = _losses(str(tmp_path), f"lora:targets=all-linear,dropout=0+{extra}")
        assert losses == pytest.approx(reference, rel=rel), extra
        if layer_class:
            first = parts.decoder_layers(model)[0]
            for part, module in (("attention", parts.layer_attention(first)), ("mlp", parts.layer_mlp(first))):
                names = parts.projection_names(model, part)
                assert names and all(type(getattr(module, n).base_layer).__name__ == layer_class for n in names)
