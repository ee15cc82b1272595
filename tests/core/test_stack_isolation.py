"""Two stacks in one process, in either order, give the same logits: a stack's effects end with its model
(memfit.plan.bench.stack_model releases it; liger's RoPE is its own model's, not the process's)."""

from __future__ import annotations

import pytest
import torch

from memfit import Stack
from memfit.plan.bench import stack_model
from memfit.strategies import liger
from _models import random_blocks

SPECS = ["lora:dropout=0+gc+tiled_mlp:tokens=8+offload", "none", "liger", "gc+cce"]


@pytest.fixture
def visible_liger(monkeypatch):
    """liger with a RoPE that rotates the other way: were it to leak into another model, that model's logits change."""
    from transformers.models.llama import modeling_llama

    rope = modeling_llama.apply_rotary_pos_emb

    def loss(hidden, weight, targets, chunk, dtype):
        logits = hidden.reshape(-1, hidden.shape[-1]) @ weight.T
        return torch.nn.functional.cross_entropy(logits.float(), targets.reshape(-1), reduction="sum")

    api = liger.LigerAPI(lambda q, k, cos, sin, *a, **kw: rope(q, k, cos, -sin, *a, **kw),
                         lambda norm: None, lambda mlp: None, loss)
    monkeypatch.setattr(liger, "liger_api", lambda ctx: api)


def _run(weights: str, spec: str) -> torch.Tensor:
    """A training step's forward and backward under the stack, then the logits the model gives in eval mode."""
    rows = random_blocks(2, 24)
    batch = {k: torch.tensor([r[k] for r in rows]) for k in ("input_ids", "labels")}
    stack = Stack.from_spec(spec)
    with stack_model(weights, stack) as net:
        ctx = stack.context("cpu")
        with stack.step_context(ctx):
            nll, _ = stack.compute_loss(net, batch, ctx)
            nll.backward()
        net.eval()
        with torch.no_grad():
            return net(batch["input_ids"]).logits


def test_stacks_in_either_order_give_the_same_logits(tiny_weights_dir, visible_liger):
    forward = {spec: _run(tiny_weights_dir, spec) for spec in SPECS}
    backward = {spec: _run(tiny_weights_dir, spec) for spec in reversed(SPECS)}
    for spec in SPECS:
        torch.testing.assert_close(backward[spec], forward[spec], rtol=0, atol=0, msg=spec)
    assert not torch.allclose(forward["liger"], forward["none"])  # the stand-in RoPE is visible where it applies
    for spec in SPECS[:1] + SPECS[3:]:  # the other stacks change memory, not the model's function
        torch.testing.assert_close(forward[spec], forward["none"], rtol=1e-5, atol=1e-5, msg=spec)
