from __future__ import annotations

import pytest
import torch

from memfit import Stack
from memfit.ops.linear_cross_entropy import linear_cross_entropy
from _models import random_blocks, saved_activation_bytes, tiny_model


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
def test_loss_and_gradients_equal_the_unchunked_computation(chunk):
    torch.manual_seed(0)
    h = torch.randn(37, 16, requires_grad=True)
    w = torch.randn(50, 16, requires_grad=True)
    y = torch.randint(0, 50, (37,))
    y[[0, 5, 6]] = -100
    ref = torch.nn.functional.cross_entropy(h @ w.T, y, reduction="sum", ignore_index=-100)
    gh, gw = torch.autograd.grad(ref * 0.25, (h, w))
    out = linear_cross_entropy(h, w, y, chunk=chunk)
    (out * 0.25).backward()
    assert out.item() == pytest.approx(ref.item(), rel=1e-6)
    torch.testing.assert_close(h.grad, gh, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(w.grad, gw, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("spec, tied", [("lora:dropout=0", False), ("none", False), ("none", True)])
def test_stack_with_cce_trains_the_same_as_without(spec, tied):
    plain = Stack.from_spec(spec)
    # memfit's own op, held to 1e-6; the other implementations are compared at 1e-5 in tests/ops
    fused = Stack.from_spec("cce16:impl=memfit" if spec == "none" else f"{spec}+cce16:impl=memfit")
    batch = {k: torch.tensor([r[k] for r in random_blocks(3, 20)]) for k in ("input_ids", "labels")}
    batch["labels"][0, :5] = -100
    results = []
    for stack in (plain, fused):
        model = stack.apply_model(tiny_model(tie_word_embeddings=tied), stack.context("cpu"))
        nll, n = stack.compute_loss(model, batch, stack.context("cpu"))
        nll.backward()
        results.append((nll.item(), int(n), {k: p.grad for k, p in model.named_parameters() if p.grad is not None}))
    (l0, n0, g0), (l1, n1, g1) = results
    assert l1 == pytest.approx(l0, rel=1e-6) and n0 == n1 == 3 * 19 - 4  # label 0 is never predicted
    assert g0.keys() == g1.keys()
    for k in g0:
        torch.testing.assert_close(g1[k], g0[k], rtol=1e-5, atol=1e-6)


def test_no_full_logits_are_saved_for_backward():
    """The point of the strategy: saved tensors no longer scale with the vocabulary."""
    def saved_bytes(spec):
        stack = Stack.from_spec(spec)
        model = stack.apply_model(tiny_model(vocab_size=4096), stack.context("cpu"))
        batch = {k: torch.tensor([r[k] for r in random_blocks(4, 64, vocab=4096)]) for k in ("input_ids", "labels")}
        return saved_activation_bytes(model, lambda: stack.compute_loss(model, batch, stack.context("cpu")))[0]

    assert saved_bytes("lora:dropout=0+gc+cce") * 4 < saved_bytes("lora:dropout=0+gc")


def test_the_loss_head_is_found_inside_an_engine_wrapper():
    """After `accelerator.prepare` the model is the engine's wrapper (DDP, DeepSpeed's engine: the model is its
    `.module`); the step's loss must find the head through it and still run the wrapper's forward. DataParallel stands
    in for DDP here (same `.module` contract, no process group): the 2-process example test runs real DDP."""
    stack = Stack.from_spec("lora:dropout=0+cce")
    ctx = stack.context("cpu")
    model = stack.apply_model(tiny_model(0), ctx)
    batch = {k: torch.tensor([r[k] for r in random_blocks(2, 16, seed=3)]) for k in ("input_ids", "labels")}
    nll, tokens = stack.compute_loss(model, batch, ctx)
    wrapped_nll, wrapped_tokens = stack.compute_loss(torch.nn.DataParallel(model), batch, ctx)
    assert wrapped_nll.item() == pytest.approx(nll.item(), rel=1e-6) and int(wrapped_tokens) == int(tokens)
