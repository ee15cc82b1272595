"""Tiled MLP: exact against the untiled MLP (loss, every gradient), alone and under checkpointing/offload, and it
keeps far fewer saved-tensor bytes."""

from __future__ import annotations

import pytest
import torch

from memfit import Stack
from memfit.strategies import GradientCheckpointing, LoRA, TiledMLP
from _models import random_blocks, saved_activation_bytes, tiny_model

ALL_LINEARS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _batch(n=3, seq=20):
    return {k: torch.tensor([r[k] for r in random_blocks(n, seq)]) for k in ("input_ids", "labels")}


def _grads(strategies):
    stack = Stack(strategies)
    ctx = stack.context("cpu")
    model = stack.apply_model(tiny_model(num_hidden_layers=2), ctx)
    with stack.step_context(ctx):
        nll, _ = stack.compute_loss(model, _batch(), ctx)
        nll.backward()
    return nll.item(), {k: p.grad for k, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("extra", [[], [GradientCheckpointing()], "offload"], ids=["alone", "gc", "gc+offload"])
@pytest.mark.parametrize("lora", [True, False], ids=["lora-all-linears", "full-finetune"])
def test_tiled_mlp_is_exact(extra, lora):
    if extra == "offload":
        from memfit.strategies import ActivationOffload

        extra = [GradientCheckpointing(), ActivationOffload()]
    base = [LoRA(targets=ALL_LINEARS, dropout=0.0)] if lora else []
    ref_loss, ref = _grads(base + extra)
    loss, got = _grads(base + extra + [TiledMLP(tokens=7)])  # 60 tokens: 8 full chunks and a ragged one
    assert loss == pytest.approx(ref_loss, rel=1e-6)
    assert got.keys() == ref.keys() and any("mlp" in k for k in got)  # MLP parameters got gradients too
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], rtol=1e-4, atol=1e-6)


def _saved_bytes(strategies) -> int:
    stack = Stack(strategies)
    ctx = stack.context("cpu")
    model = stack.apply_model(tiny_model(num_hidden_layers=2), ctx)
    return saved_activation_bytes(model, lambda: stack.compute_loss(model, _batch(n=4, seq=64), ctx))[0]


def test_tiled_mlp_keeps_only_the_mlp_input():
    lora = LoRA(dropout=0.0)
    plain, tiled = _saved_bytes([lora]), _saved_bytes([lora, TiledMLP(tokens=16)])
    config = tiny_model().config
    tokens, h, i = 4 * 64, config.hidden_size, config.intermediate_size
    # per layer the untiled MLP keeps gate, up, silu(gate) (3 x i wide) and the down input (i); tiled keeps x (h)
    assert plain - tiled >= config.num_hidden_layers * tokens * (3 * i - h) * 4


def test_evaluation_runs_untiled_and_gives_the_same_logits():
    model = Stack([TiledMLP(tokens=5)]).apply_model(tiny_model(), Stack([]).context("cpu"))
    ids = _batch()["input_ids"]
    with torch.no_grad():
        tiled = model(input_ids=ids).logits
    ref = tiny_model()(input_ids=ids).logits.detach()
    torch.testing.assert_close(tiled, ref)


def test_first_layer_mlp_adapters_train_though_its_input_needs_no_gradient():
    # LoRA on the MLP only: nothing before layer 0's MLP is trainable, so its input does not require grad
    base = [LoRA(targets=["gate_proj", "up_proj", "down_proj"], dropout=0.0)]
    ref_loss, ref = _grads(base)
    loss, got = _grads(base + [TiledMLP(tokens=7)])
    assert got.keys() == ref.keys() and any("layers.0.mlp" in k for k in got)
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], rtol=1e-4, atol=1e-6)
