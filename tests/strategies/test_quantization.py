"""bitsandbytes works on this CPU: 4-bit/8-bit loading, LoRA backward and AdamW8bit train the adapter."""

from __future__ import annotations

import pytest
import torch

import memfit
from memfit import Stack, TrainConfig
from _models import random_blocks, tiny_model

bnb = pytest.importorskip("bitsandbytes")


@pytest.fixture(scope="module")
def saved_tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny")
    tiny_model().save_pretrained(path)
    return str(path)


@pytest.mark.parametrize("spec, layer_type", [
    ("lora+q4+adam8", "Linear4bit"),
    ("lora+q8", "Linear8bitLt"),
    ("lora+q4+bf16+gc", "Linear4bit"),
])
def test_quantized_loading_trains_the_adapter(saved_tiny, spec, layer_type):
    stack = Stack.from_spec(spec)
    model = memfit.load_model(saved_tiny, stack)
    q_proj = model.base_model.model.model.layers[0].self_attn.q_proj
    assert type(q_proj.base_layer).__name__ == layer_type
    assert not any(p.requires_grad for n, p in model.named_parameters() if "lora_" not in n)
    lora_before = q_proj.lora_B.default.weight.detach().clone()
    res = memfit.train(model, stack, random_blocks(16, 32, pattern=True),
                       TrainConfig(micro_batch=4, max_steps=4, lr=1e-2, warmup=0, progress=False))
    assert res.losses[-1] < res.losses[0]
    assert not torch.equal(lora_before, q_proj.lora_B.default.weight)


def test_adam8_builds_bitsandbytes_optimizer_and_paged_falls_back_on_cpu():
    stack = Stack.from_spec("lora+paged_adam8")
    model = stack.apply_model(tiny_model(), stack.context("cpu"))
    with pytest.warns(UserWarning, match="unpaged"):
        opt = stack.make_optimizer(model, stack.context("cpu"), lr=1e-3)
    assert type(opt).__name__ == "AdamW8bit"


def test_norms_and_embeddings_stay_in_the_compute_dtype(saved_tiny):
    """No blanket fp32 upcast (unlike prepare_model_for_kbit_training), unless asked for."""
    model = memfit.load_model(saved_tiny, Stack.from_spec("lora+q4+bf16"))
    base = model.base_model.model
    assert base.model.norm.weight.dtype == torch.bfloat16
    assert base.model.embed_tokens.weight.dtype == torch.bfloat16
    upcast = memfit.load_model(saved_tiny, Stack.from_spec("lora+q4:upcast_norms=true+bf16"))
    assert upcast.base_model.model.model.norm.weight.dtype == torch.float32
