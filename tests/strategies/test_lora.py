from __future__ import annotations

import torch

import memfit
from memfit import Stack, TrainConfig
from _models import random_blocks, tiny_model


def test_trainable_fraction_is_below_one_percent_on_a_realistic_shape():
    from transformers import LlamaForCausalLM

    config = memfit.load_config("llama-3.2-1b")
    with torch.device("meta"):  # shapes only: a real 1B layout without allocating it
        model = LlamaForCausalLM(config)
    stack = Stack.from_spec("lora")
    model = stack.apply_model(model, stack.context("meta"))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    assert trainable / total < 0.01
    assert trainable == memfit.estimate(stack, config, 512).trainable_params  # the memory model agrees


def test_only_adapter_weights_change_after_a_step():
    stack = Stack.from_spec("lora")
    model = stack.apply_model(tiny_model(), stack.context("cpu"))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    memfit.train(model, stack, random_blocks(4, 16), TrainConfig(micro_batch=2, max_steps=2, lr=1e-2, warmup=0,
                                                                 progress=False))
    changed = {n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())}
    assert changed and all("lora_" in n for n in changed)
    # B starts at zero, so A only moves from the second step on: both must have moved after two
    assert any("lora_A" in n for n in changed) and any("lora_B" in n for n in changed)
