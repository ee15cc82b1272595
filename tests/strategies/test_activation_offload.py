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


def _forward(stack, model, batch):
    with stack.step_context(stack.context("cpu")):
        nll, _ = stack.compute_loss(model, batch, stack.context("cpu"))
    return nll


def test_host_arena_is_reused_step_after_step():
    stack = Stack.from_spec("lora+gc+offload")
    model = stack.apply_model(tiny_model(num_hidden_layers=3), stack.context("cpu"))
    batch = {k: torch.tensor([r[k] for r in random_blocks(4, 32)]) for k in ("input_ids", "labels")}
    arena = model._memfit_offloader.arena
    _forward(stack, model, batch).backward()
    reserved = arena.reserved
    assert reserved >= 3 * 4 * 32 * model.config.hidden_size * 4  # three layer inputs, fp32
    for _ in range(3):
        _forward(stack, model, batch).backward()
    assert arena.reserved == reserved and len(arena.chunks) == 3  # no new host memory after the first step


def test_backward_after_a_second_forward_is_refused_not_silently_wrong():
    stack = Stack.from_spec("lora+gc+offload")
    model = stack.apply_model(tiny_model(), stack.context("cpu"))
    batch = {k: torch.tensor([r[k] for r in random_blocks(2, 16)]) for k in ("input_ids", "labels")}
    first = _forward(stack, model, batch)
    _forward(stack, model, batch)  # rewinds the arena: the first graph's parked inputs may be overwritten
    with pytest.raises(RuntimeError, match="run backward before the next forward"):
        first.backward()


def test_no_grad_forward_in_train_mode_parks_nothing():
    stack = Stack.from_spec("lora+gc+offload")
    model = stack.apply_model(tiny_model(), stack.context("cpu"))
    batch = {k: torch.tensor([r[k] for r in random_blocks(2, 16)]) for k in ("input_ids", "labels")}
    with torch.no_grad():
        _forward(stack, model, batch)
    assert model._memfit_offloader.arena.reserved == 0 and model.training


def test_offload_reaches_checkpointing_through_the_declared_hook_not_by_overwriting_it():
    import inspect

    from memfit.strategies import activation_offload

    assert "_gradient_checkpointing_func" not in inspect.getsource(activation_offload)  # gc's attribute stays gc's
    stack = Stack.from_spec("lora+gc2+offload")
    model = stack.apply_model(tiny_model(num_hidden_layers=4), stack.context("cpu"))
    funcs = [layer._gradient_checkpointing_func for layer in model.base_model.model.model.layers]
    assert all(f == model._memfit_offloader.checkpoint for f in funcs)  # what gc installed, asked of the stack
