"""Telemetry readings: the throughput meter's warm-up exclusion and the CPU memory reading."""

from __future__ import annotations

import time

import pytest
import torch

from memfit.training.telemetry import Meter, memory_stats, reset_peak


def test_meter_excludes_the_first_interval_from_the_mean(monkeypatch):
    clock = iter([0.0, 10.0, 11.0, 13.0])  # start, then three updates: a slow warm-up step and two fast ones
    monkeypatch.setattr(time, "perf_counter", lambda: next(clock))
    meter = Meter()
    assert meter.mean_rate == 0.0  # nothing measured yet
    assert meter.update(100) == pytest.approx(10.0)  # 100 tokens in the 10 s warm-up
    assert meter.mean_rate == 0.0  # only the warm-up so far: no mean to report
    assert meter.update(300) == pytest.approx(300.0)
    assert meter.update(400) == pytest.approx(200.0)
    assert meter.mean_rate == pytest.approx(700 / 3.0)  # (300 + 400) tokens over the 3 s after warm-up
    assert meter.seconds == pytest.approx(13.0)


def test_cpu_memory_reading_is_the_peak_resident_set():
    reset_peak(torch.device("cpu"))  # a no-op on CPU, but callable with any device
    before = memory_stats("cpu")
    block = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
    after = memory_stats("cpu")
    del block
    assert before["device"] == after["device"] == "cpu"
    assert 0 < before["peak_rss_gib"] <= after["peak_rss_gib"]
