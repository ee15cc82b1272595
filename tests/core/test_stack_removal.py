"""Stack.remove_model undoes Stack.apply_model: same parameter names, same logits, no hooks or wrappers left; and
two models with their own stacks in one process keep their own state."""

from __future__ import annotations

import pytest
import torch

from memfit import Stack
from memfit.core.protocol import StackError
from _models import random_blocks, tiny_model

REVERSIBLE = ["gc", "gc:layers=1", "lora", "lora+gc+offload", "tiled_mlp", "cce", "lora+gc+offload+tiled_mlp+cce"]


def _ids():
    return torch.tensor([r["input_ids"] for r in random_blocks(2, 16)])


def _batch():
    rows = random_blocks(2, 16)
    return {k: torch.tensor([r[k] for r in rows]) for k in ("input_ids", "labels")}


def _hooks(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


@pytest.mark.parametrize("spec", REVERSIBLE)
def test_apply_then_remove_restores_the_model(spec):
    original = tiny_model().eval()
    with torch.no_grad():
        ref = original(_ids()).logits
    names, types = [n for n, _ in original.named_parameters()], [type(m) for m in original.modules()]
    stack = Stack.from_spec(spec)
    ctx = stack.context("cpu")
    model = stack.apply_model(original, ctx)
    with stack.step_context(ctx):  # the stack must really have been in use, state and all
        nll, _ = stack.compute_loss(model, _batch(), ctx)
        nll.backward()
    model = stack.remove_model(model, ctx).eval()
    assert [n for n, _ in model.named_parameters()] == names
    assert [type(m) for m in model.modules()] == types
    assert _hooks(model) == 0 and not any(getattr(m, "gradient_checkpointing", False) for m in model.modules())
    with torch.no_grad():
        torch.testing.assert_close(model(_ids()).logits, ref, rtol=0, atol=0)


@pytest.mark.parametrize("spec, culprit", [("lora+q8", "quant8bit"), ("lora+q4", "quant4bit")])
def test_irreversible_strategies_are_refused_by_name(spec, culprit):
    """q4/q8 replace the weights by quantized ones: reload the model instead. (compile is undone since the auto
    search frees each candidate: its layers' compiled call is reset, tests/strategies/test_compile_layers.py.)"""
    stack = Stack.from_spec(spec)
    with pytest.raises(StackError, match=f"{culprit} cannot be removed"):
        stack.remove_model(torch.nn.Linear(1, 1), stack.context("cpu"))


def test_two_models_with_their_own_offload_do_not_interfere():
    """A forward of one model must not rewind the other's host arena while its backward is pending."""
    stacks = [Stack.from_spec("lora+gc+offload"), Stack.from_spec("gc+offload")]
    ctxs = [s.context("cpu") for s in stacks]
    models = [s.apply_model(tiny_model(seed=i), c) for i, (s, c) in enumerate(zip(stacks, ctxs))]
    losses = []
    for stack, ctx, model in zip(stacks, ctxs, models):
        with stack.step_context(ctx):
            losses.append(stack.compute_loss(model, _batch(), ctx)[0])
    for loss in losses:  # both backwards after both forwards: each arena still holds its own step
        loss.backward()
    assert models[0]._memfit_offloader is not models[1]._memfit_offloader
    assert all(p.grad is not None for m in models for p in m.parameters() if p.requires_grad)
