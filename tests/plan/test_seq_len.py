"""Longest context against the simulated meter: exact boundary, leak-free, cached, weights untouched."""

from __future__ import annotations

import pytest
import torch

from memfit import Stack
from memfit.plan.probe import SimulatedMeter, run_probe
from memfit.plan.seq_len import plan_max_seq_len
from _models import tiny_model

BUDGET = 0.8e6  # ~250 tokens of the tiny model at micro-batch 1


def _model(spec="lora:dropout=0+gc"):
    stack = Stack.from_spec(spec)
    return stack, stack.apply_model(tiny_model(max_position_embeddings=4096), stack.context("cpu"))


def _fits_from_scratch(stack, model, seq: int, micro_batch: int = 1) -> bool:
    ctx = stack.context("cpu")
    opt = stack.make_optimizer(model, ctx, lr=0.0)
    run_probe(model, opt, stack, ctx, SimulatedMeter(BUDGET), 1, 8)  # optimizer state allocated, as in the search
    return run_probe(model, opt, stack, ctx, SimulatedMeter(BUDGET), micro_batch, seq).fits


def test_max_seq_len_is_exact_against_real_steps(tmp_path):
    stack, model = _model()
    lines = []
    res = plan_max_seq_len(model, stack, meter=SimulatedMeter(BUDGET), cache_dir=tmp_path, progress=lines.append)
    assert 2 < res.max_seq_len < 4096
    assert _fits_from_scratch(stack, model, res.max_seq_len)
    assert not _fits_from_scratch(stack, model, res.max_seq_len + 1)
    # the bound is the search's cost on this toy, whose memory is not linear at a few tokens (its first point reads the
    # baseline exactly, so the search gallops from 2): 16 before the loss stopped copying the logits, 18 since
    assert len(lines) == res.probe_count <= 18 and res.peak_gib is not None
    assert res.predicted_max is not None


def test_micro_batch_two_halves_the_context_and_results_are_cached(tmp_path):
    stack, model = _model()
    one = plan_max_seq_len(model, stack, meter=SimulatedMeter(BUDGET), cache_dir=tmp_path)
    two = plan_max_seq_len(model, stack, micro_batch=2, meter=SimulatedMeter(BUDGET), cache_dir=tmp_path)
    assert two.max_seq_len < one.max_seq_len and two.micro_batch == 2
    again = plan_max_seq_len(model, stack, meter=SimulatedMeter(BUDGET), cache_dir=tmp_path)
    assert again.cache_hit and again.max_seq_len == one.max_seq_len


def test_planning_the_context_does_not_change_the_weights(tmp_path):
    stack, model = _model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    plan_max_seq_len(model, stack, meter=SimulatedMeter(BUDGET), cache_dir=tmp_path)
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())


def test_the_search_stops_at_the_native_positions_and_passes_them_only_with_a_scaling(tmp_path):
    from memfit.plan.rope import config_overrides, parse_rope_scaling

    stack = Stack.from_spec("lora:dropout=0+gc")
    native = stack.apply_model(tiny_model(max_position_embeddings=64), stack.context("cpu"))
    res = plan_max_seq_len(native, stack, meter=SimulatedMeter(BUDGET), cache_dir=tmp_path)
    assert res.max_seq_len == 64 and res.at_position_limit and res.rope_scaling is None
    with pytest.raises(ValueError, match="--rope-scaling"):
        plan_max_seq_len(native, stack, meter=SimulatedMeter(BUDGET), cache_dir=tmp_path, limit=128)

    overrides = config_overrides(native.config, parse_rope_scaling("yarn:factor=16"))
    scaled = stack.apply_model(tiny_model(**overrides), stack.context("cpu"))
    far = plan_max_seq_len(scaled, stack, meter=SimulatedMeter(BUDGET), cache_dir=tmp_path)
    assert 64 < far.max_seq_len < 1024 and not far.at_position_limit
    assert far.rope_scaling["rope_type"] == "yarn" and far.position_limit == 1024
    assert _fits_from_scratch(stack, scaled, far.max_seq_len) and not _fits_from_scratch(stack, scaled,
                                                                                          far.max_seq_len + 1)
