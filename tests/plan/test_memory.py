"""The analytic memory model: its per-layer coefficients against the bytes autograd really saves, and its predictions
against the exact maxima measured on the H100 (benchmarks/results/h100-2026-11-26*/)."""

from __future__ import annotations

import pytest
import torch

import memfit
from memfit import Stack
from memfit.plan.memory import estimate
from memfit.plan.probe import autocast_for
from _families import FAMILY_TYPES, family_model
from _models import random_blocks, saved_activation_bytes, tiny_model

SHAPE = dict(hidden_size=128, intermediate_size=352, num_attention_heads=4, num_key_value_heads=2)


def _saved_bytes(spec: str, layers: int, n: int = 2, seq: int = 64, family: str | None = None) -> tuple[int, object]:
    """Bytes of distinct non-parameter storages saved for backward by one forward in the stack's compute dtype."""
    stack = Stack.from_spec(spec)
    ctx = stack.context("cpu")
    base = (family_model(family, num_hidden_layers=layers, **SHAPE, head_dim=SHAPE["hidden_size"] // 4,
                         sliding_window=32) if family else tiny_model(num_hidden_layers=layers, **SHAPE))
    model = stack.apply_model(base.to(ctx.compute_dtype), ctx)
    batch = {k: torch.tensor([r[k] for r in random_blocks(n, seq)]) for k in ("input_ids", "labels")}

    def forward():
        with autocast_for(stack, ctx), stack.step_context(ctx):
            stack.compute_loss(model, batch, ctx)

    return saved_activation_bytes(model, forward)[0], model.config


# LoRA dropout 0: on CPU autocast the dropout keeps a 4-byte mask per element, on CUDA 1 byte (what the model counts).
@pytest.mark.parametrize("spec", ["lora:dropout=0+bf16", "bf16", "lora:dropout=0+bf16+tiled_mlp:tokens=16"])
def test_layer_coefficients_match_saved_bytes(spec):
    three, config = _saved_bytes(spec, 3)
    two, _ = _saved_bytes(spec, 2)
    measured = (three - two) / (2 * 64)  # one decoder layer, per token
    predicted = estimate(Stack.from_spec(spec), config, 64).layer_activation_bytes_per_token()
    assert predicted == pytest.approx(measured, rel=0.1)


# Every family's layer (memfit/plan/family_terms.py): Gemma's four fp32 norms and eager soft-capped attention, q/k
# norms, Phi-3's fused q|k|v storage, sliding-window masks (window 32 < seq 64), within 5 %.
@pytest.mark.parametrize("spec", ["bf16", "lora:dropout=0+bf16"])
@pytest.mark.parametrize("family", FAMILY_TYPES)
def test_each_familys_layer_coefficients_match_saved_bytes(family, spec):
    three, config = _saved_bytes(spec, 3, family=family)
    two, _ = _saved_bytes(spec, 2, family=family)
    measured = (three - two) / (2 * 64)
    est = estimate(Stack.from_spec(spec), config, 64)
    assert est.layer_activation_bytes_per_token() == pytest.approx(measured, rel=0.05)
    assert est.terms["norms"].owner == family and est.terms["activations"].owner == family


def _llama_3b(spec: str, seq: int):
    return estimate(Stack.from_spec(spec), memfit.load_config("llama-3.2-3b"), seq)


# (stack, seq, largest size that fitted, smallest that failed): exact searches and fixed-size probes on one H100 80GB
MEASURED = [
    ("lora+q4+bf16+paged_adam8", 512, 31, 32),
    ("lora+q4+bf16+gc+paged_adam8", 512, 92, 93),
    ("lora+q4+bf16+gc+paged_adam8", 2048, 23, 24),
    ("lora+q4+bf16+gc+cce+paged_adam8", 512, 450, 451),
    ("lora+q4+bf16+gc+cce+paged_adam8", 2048, 112, 113),
    ("lora+bf16+gc", 512, 88, 89),
    ("lora+bf16+cce", 512, 41, 42),
    ("lora+bf16+cce+compile", 512, 53, 54),
    ("lora:dropout=0+bf16+cce+compile", 512, 70, 71),
    ("lora:dropout=0+bf16+cce+compile", 2048, 17, 18),
    ("lora+q4+bf16+gc+cce+offload+tiled_mlp+paged_adam8", 512, 900, 1000),
    ("lora+q4+bf16+gc+cce+offload+tiled_mlp+paged_adam8", 2048, 200, 240),
]


@pytest.mark.parametrize("spec,seq,fits,fails", MEASURED, ids=[f"{m[0]}@{m[1]}" for m in MEASURED])
def test_predictions_match_the_h100(spec, seq, fits, fails):
    predicted = _llama_3b(spec, seq).max_micro_batch(79.18 * 2**30)  # the H100's usable memory
    assert 0.9 * fits <= predicted <= 1.1 * (fails - 1), predicted


# (stack, seq, micro-batch, measured peak GiB): fixed-size steps on the H100 (step_probe.py), sizes far from the boundary
PEAKS = [
    ("lora+bf16+cce", 512, 32, 61.9),
    ("lora:dropout=0+bf16+cce", 512, 32, 56.8),
    ("lora+bf16+cce+compile", 512, 32, 49.8),
    ("lora:dropout=0+bf16+cce+compile", 512, 32, 39.4),
    ("lora+q4+bf16+gc+cce+offload+tiled_mlp+paged_adam8", 512, 800, 67.1),
    ("lora+q4+bf16+gc+cce+offload+tiled_mlp+compile+paged_adam8", 512, 800, 53.8),
]


@pytest.mark.parametrize("spec,seq,micro_batch,peak_gib", PEAKS, ids=[f"{p[0]}x{p[2]}" for p in PEAKS])
def test_peaks_match_the_h100(spec, seq, micro_batch, peak_gib):
    assert _llama_3b(spec, seq).peak_bytes(micro_batch) / 2**30 == pytest.approx(peak_gib, rel=0.05)


# ---- sharding (issue 20): per-process static memory under DDP / ZeRO / FSDP2 -----------------------------------

def _wide_config():
    """Weights dominate: a full fine-tune of a wide, deep model at a short sequence."""
    from _models import tiny_config

    return tiny_config(hidden_size=512, intermediate_size=1408, num_hidden_layers=8, vocab_size=4096)


@pytest.mark.parametrize("spec", ["none", "lora", "lora+bf16+gc", "lora+q4+bf16+gc+adam8", "bf16+gc"])
@pytest.mark.parametrize("engine", ["single", "ddp", "zero2", "zero3", "fsdp"])
def test_one_process_is_todays_estimate_exactly(spec, engine):
    config = _wide_config()
    plain = estimate(Stack.from_spec(spec), config, 256)
    sharded = estimate(Stack.from_spec(spec), config, 256, engine=engine, world=1)
    assert sharded.breakdown(7) == plain.breakdown(7)
    assert sharded.max_micro_batch(2 * 2**30) == plain.max_micro_batch(2 * 2**30)


def test_sharding_divides_what_each_engine_shards():
    config, stack = _wide_config(), Stack.from_spec("none")
    one = estimate(stack, config, 128).static_bytes()
    per = {engine: estimate(stack, config, 128, engine=engine, world=4).static_bytes()
           for engine in ("ddp", "zero1", "zero2", "zero3", "fsdp")}
    assert per["ddp"]["weights"] == one["weights"] and per["ddp"]["ddp_buckets"] == one["gradients"]
    assert per["zero1"]["optimizer"] == one["optimizer"] / 4 and per["zero1"]["gradients"] == one["gradients"]
    assert per["zero2"]["gradients"] == one["gradients"] / 4 and per["zero2"]["weights"] == one["weights"]
    for engine in ("zero3", "fsdp"):
        assert {per[engine][k] for k in ("weights", "gradients")} == {one["weights"] / 4}  # fp32 full fine-tune
        assert 0 < per[engine]["gathered_layers"] < one["weights"]
        assert per[engine]["workspace"] == one["workspace"]  # not state: every process has its own


@pytest.mark.parametrize("engine", ["zero2", "zero3", "fsdp"])
def test_sharded_max_micro_batch_is_larger_for_a_weights_dominated_model(engine):
    config, stack = _wide_config(), Stack.from_spec("none")
    one = estimate(stack, config, 64)
    budget = one.peak_bytes(4)  # one process fits 4
    two = estimate(stack, config, 64, engine=engine, world=2)
    assert one.max_micro_batch(budget) == 4
    assert two.max_micro_batch(budget) > 2 * one.max_micro_batch(budget)
    assert estimate(stack, config, 64, engine="ddp", world=2).max_micro_batch(budget) < 4  # its buckets cost


def test_shard_refuses_unknown_engines_and_sharding_twice():
    est = estimate(Stack.from_spec("none"), _wide_config(), 64, engine="fsdp", world=2)
    with pytest.raises(ValueError, match="already sharded"):
        est.shard("fsdp", 2)
    with pytest.raises(ValueError, match="not one of"):
        estimate(Stack.from_spec("none"), _wide_config(), 64, engine="zero4", world=2)
    assert "/ fsdp" in est.contributions(1) and "gathered_layers" in est.contributions(1)


@pytest.mark.parametrize("spec", ["none", "bf16"])
def test_gemma2_soft_cap_keeps_one_vocabulary_wide_tensor_more(spec):
    """'logit_softcap' counts tanh's saved output (checked here) and the capped logits beside the raw ones."""
    def saved(cap):
        stack = Stack.from_spec(spec)
        ctx = stack.context("cpu")
        model = stack.apply_model(family_model("gemma2", final_logit_softcapping=cap).to(ctx.compute_dtype), ctx)
        batch = {k: torch.tensor([r[k] for r in random_blocks(2, 64)]) for k in ("input_ids", "labels")}

        def forward():
            with autocast_for(stack, ctx), stack.step_context(ctx):
                stack.compute_loss(model, batch, ctx)

        return saved_activation_bytes(model, forward)[0], model.config

    capped, config = saved(0.5)
    est = estimate(Stack.from_spec(spec), config, 64)
    assert (capped - saved(None)[0]) / 128 == est.compute_bytes * config.vocab_size == est.term("logit_softcap") / 2
