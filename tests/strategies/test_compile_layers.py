"""CompileLayers: the compiled model gives the eager loss and gradients (alone and under checkpointing, tiled MLP and
offload), really runs compiled graphs, and leaves parameter names alone (checkpoints and adapters save as before)."""

from __future__ import annotations

import pytest
import torch

from memfit import Stack
from _models import random_blocks, tiny_model


def _batch(n, seq=20):
    return {k: torch.tensor([r[k] for r in random_blocks(n, seq, seed=n)]) for k in ("input_ids", "labels")}


def _run(spec: str):
    """Three steps of different shapes (the planner's probes change the micro-batch) accumulating gradients."""
    stack = Stack.from_spec(spec)
    ctx = stack.context("cpu")
    model = stack.apply_model(tiny_model(num_hidden_layers=2), ctx)
    losses = []
    for b in (_batch(3), _batch(5), _batch(2, seq=12)):
        with stack.step_context(ctx):
            nll, _ = stack.compute_loss(model, b, ctx)
        nll.backward()
        losses.append(nll.item())
    return losses, {k: p.grad for k, p in model.named_parameters() if p.grad is not None}, model


# LoRA dropout is 0: inductor draws its own random numbers, so dropout masks (not the maths) would differ from eager.
@pytest.mark.parametrize("spec", ["lora:dropout=0", "lora:dropout=0+gc+cce", "gc+tiled_mlp:tokens=7+offload",
                                  "lora:dropout=0+gc+offload", "lora:dropout=0+tiled_mlp:tokens=7+gc"])
def test_compiled_layers_match_eager(spec):
    torch._dynamo.reset()
    ref_losses, ref, _ = _run(spec)
    losses, got, model = _run(spec + "+compile:backend=aot_eager")
    assert losses == pytest.approx(ref_losses, rel=1e-6)
    assert got.keys() == ref.keys()
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], rtol=1e-4, atol=1e-6)
    from torch._dynamo.utils import counters

    assert counters["stats"]["unique_graphs"] > 0  # the parts were traced, not silently left eager
    assert not counters["graph_break"], dict(counters["graph_break"])


def test_inductor_code_matches_eager():
    torch._dynamo.reset()
    spec = "lora:dropout=0+gc"
    ref_losses, ref, _ = _run(spec)
    losses, got, _ = _run(spec + "+compile")
    assert losses == pytest.approx(ref_losses, rel=1e-5)
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], rtol=1e-4, atol=1e-6)


def test_parameter_names_are_unchanged():
    ctx = Stack([]).context("cpu")
    plain = Stack.from_spec("lora").apply_model(tiny_model(), ctx)
    compiled = Stack.from_spec("lora+compile:backend=aot_eager").apply_model(tiny_model(), ctx)
    assert list(compiled.state_dict()) == list(plain.state_dict())


def test_spec_round_trip_and_description():
    stack = Stack.from_spec("lora+bf16+compile:mode=max-autotune-no-cudagraphs")
    assert "compile:mode=max-autotune-no-cudagraphs" in stack.spec
    assert Stack.from_spec(stack.spec) == stack
    assert "torch.compile" in stack.get("compile").describe()
