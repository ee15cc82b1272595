"""Probes run what training runs: packed blocks restart their position ids like the data pipeline's."""

from __future__ import annotations

import pytest
import torch

from memfit import Stack
from memfit.plan.probe import SimulatedMeter, probe_line, random_batch, run_probe
from _models import tiny_model


def test_packed_probe_batches_restart_positions_per_document():
    batch = random_batch(3, 10, 128, "cpu", packed=True)
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 4, 0, 1, 2, 3, 4]] * 3
    assert "position_ids" not in random_batch(3, 10, 128, "cpu")


def test_packed_probe_trains_through_the_model_with_those_positions():
    stack = Stack.from_spec("lora:dropout=0")
    model = stack.apply_model(tiny_model(), stack.context("cpu"))
    seen = []
    model.get_base_model().model.register_forward_pre_hook(
        lambda mod, args, kwargs: seen.append(kwargs.get("position_ids")), with_kwargs=True)
    ctx = stack.context("cpu")
    p = run_probe(model, stack.make_optimizer(model, ctx, lr=0.0), stack, ctx, SimulatedMeter(1e9), 2, 16, packed=True)
    assert p.fits and p.peak_bytes and seen[0] is not None and seen[0][0, 8].item() == 0
    assert "micro-batch 2: fits" in probe_line(p)


def test_time_steps_skips_the_warm_up_and_averages_step_time():
    from memfit.plan.probe import Probe, time_steps

    speeds = iter([10.0, 50.0, 100.0, 200.0, 100.0])  # two compile-like warm-up steps, then steady steps
    timing = time_steps(lambda: Probe(4, True, None, 1.0, next(speeds)), 4)
    assert timing.steps == 5 and timing.tokens_per_s == pytest.approx(3 / (1 / 100 + 1 / 200 + 1 / 100))
    oom = time_steps(lambda: Probe(4, False, error="CUDA out of memory"), 4)
    assert oom.tokens_per_s is None and oom.steps == 1 and "out of memory" in oom.error


def test_the_cuda_meter_caps_memory_only_inside_its_with_block(monkeypatch):
    from types import SimpleNamespace

    from memfit.plan.probe import CudaMeter

    fractions = []
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: SimpleNamespace(total_memory=2**30))
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", lambda f, device: fractions.append(f))
    meter = CudaMeter(torch.device("cuda", 0), margin=0.25)
    assert fractions == [] and meter.budget == 0.75 * 2**30  # constructing it changes nothing in the process
    with pytest.raises(RuntimeError, match="between"):
        with meter:
            assert fractions == [0.75]
            raise RuntimeError("an error between capping and the search")
    assert fractions == [0.75, 1.0]  # lifted on the way out, whatever happened inside
