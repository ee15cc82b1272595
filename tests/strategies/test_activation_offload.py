from __future__ import annotations

import pytest
import torch

from memfit import Stack, StackError
from _models import random_blocks, tiny_model


def _grads(spec: str):
    stack = Stack.from_spec(spec)
    model = stack.apply_model(tiny_model(num_hidden_layers=3), stack.context("cpu"))
    batch = {k: torch.tensor([r[k] for r in random_blocks(3, 20)]) for k in ("input_ids", "labels")}
    torch.manual_seed(5)  # same dropout masks in every variant's forward
    with stack.step_context(stack.context("cpu")):
        nll, _ = stack.compute_loss(model, batch, stack.context("cpu"))
        nll.backward()
    return nll.item(), {k: p.grad for k, p in model.named_parameters() if p.grad is not None}


def test_offloaded_recompute_reproduces_dropout_and_gradients():
    ref_loss, ref = _grads("lora:dropout=0.3")
    loss, got = _grads("lora:dropout=0.3+gc+offload")
    assert loss == ref_loss and got.keys() == ref.keys() and len(got) == 3 * 4 * 2
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], rtol=1e-5, atol=1e-7)


def test_offload_needs_checkpointing_and_respects_the_host_cap():
    with pytest.raises(StackError, match="add 'gc'"):
        Stack.from_spec("lora+offload")
    stack = Stack.from_spec("lora+gc+offload:max_host_gib=0.000001")
    model = stack.apply_model(tiny_model(), stack.context("cpu"))
    batch = {k: torch.tensor([r[k] for r in random_blocks(8, 64)]) for k in ("input_ids", "labels")}
    with pytest.raises(torch.OutOfMemoryError, match="host-memory cap"):
        with stack.step_context(stack.context("cpu")):
            stack.compute_loss(model, batch, stack.context("cpu"))
