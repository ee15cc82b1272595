from __future__ import annotations

import pytest
import torch

from memfit import Stack
from memfit.strategies.gradient_checkpointing import checkpointed_layers
from _models import random_blocks, saved_activation_bytes, tiny_model


def _saved_bytes_and_grads(spec: str, layers: int = 4):
    stack = Stack.from_spec(spec)
    model = stack.apply_model(tiny_model(num_hidden_layers=layers), stack.context("cpu"))
    batch = {k: torch.tensor([r[k] for r in random_blocks(4, 64)]) for k in ("input_ids", "labels")}
    activation_bytes, (nll, _) = saved_activation_bytes(
        model, lambda: stack.compute_loss(model, batch, stack.context("cpu")))
    nll.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return activation_bytes, grads, model


@pytest.mark.parametrize("base", ["lora:dropout=0", "none"])
def test_checkpointing_cuts_saved_bytes_and_keeps_gradients(base):
    plain, g_plain, _ = _saved_bytes_and_grads(base)
    ckpt, g_ckpt, model = _saved_bytes_and_grads(f"{base}+gc" if base != "none" else "gc")
    assert len(checkpointed_layers(model)) == 4
    # Without checkpointing each layer keeps ~10 tensors per token; with it, only its input (plus the shared
    # embedding/logits path). On this tiny shape the logits dominate what remains: at least 2x less overall.
    assert ckpt * 2 < plain, (plain, ckpt)
    for name, g in g_plain.items():
        torch.testing.assert_close(g_ckpt[name], g, rtol=1e-5, atol=1e-6)


def test_partial_checkpointing_spreads_layers_and_saves_in_between():
    full, _, _ = _saved_bytes_and_grads("lora:dropout=0+gc")
    half, _, model = _saved_bytes_and_grads("lora:dropout=0+gc2")
    none, _, _ = _saved_bytes_and_grads("lora:dropout=0")
    flags = [getattr(m, "gradient_checkpointing") for m in model.base_model.model.model.layers]
    assert flags == [True, False, True, False]
    assert full < half < none


def test_checkpointed_layers_run_through_the_stacks_declared_layer_checkpoint():
    """A strategy providing the layer_checkpoint hook decides how gc's layers run (as offload does); gc alone uses
    torch's checkpoint, and restore takes the function off the layers again."""
    from functools import partial

    from torch.utils.checkpoint import checkpoint

    calls = []

    class CountingCheckpoint:
        name, phase = "counting_checkpoint", 45

        def describe(self):
            return "counts checkpointed layer calls"

        def layer_checkpoint(self, model, ctx):
            return lambda run, *args, **kw: calls.append(1) or partial(checkpoint, use_reentrant=False)(run, *args, **kw)

    stack = Stack([*Stack.from_spec("gc"), CountingCheckpoint()])
    ctx = stack.context("cpu")
    model = stack.apply_model(tiny_model(num_hidden_layers=3), ctx)
    batch = {k: torch.tensor([r[k] for r in random_blocks(2, 16)]) for k in ("input_ids", "labels")}
    stack.compute_loss(model, batch, ctx)[0].backward()
    assert len(calls) == 3
    stack.remove_model(model, ctx)
    assert not any("_gradient_checkpointing_func" in m.__dict__ for m in model.modules())
