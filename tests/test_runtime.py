"""configure_runtime: the one place process-wide settings are made: memfit's own once per process, and the union of
what the strategies declare through the runtime_needs hook, never lowered by a later stack."""

from __future__ import annotations

import pytest
import torch

import memfit
import memfit.runtime as runtime
from memfit import Stack
from memfit.core.protocol import HOOKS, hooks_of


@pytest.fixture
def fresh_process(monkeypatch):
    import torch._dynamo

    monkeypatch.delenv("PYTORCH_CUDA_ALLOC_CONF", raising=False)
    monkeypatch.setattr(runtime, "_process", {})
    monkeypatch.setattr(runtime, "_needs", {})
    key = next(k for k in ("recompile_limit", "cache_size_limit") if hasattr(torch._dynamo.config, k))
    monkeypatch.setattr(torch._dynamo.config, key, 8)
    calls: list[bool] = []
    monkeypatch.setattr(torch.backends.cuda, "enable_cudnn_sdp", lambda on: calls.append(on))
    return lambda: getattr(torch._dynamo.config, key), calls


def test_settings_once_per_process_and_the_union_of_declared_needs(fresh_process):
    dynamo_limit, sdpa_calls = fresh_process
    assert memfit.configure_runtime() == {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True", "cudnn_sdpa": False}
    assert dynamo_limit() == 8  # nothing declared a need yet: left alone
    applied = memfit.configure_runtime(Stack.from_spec("lora+compile"))
    assert sdpa_calls == [False]  # memfit's own settings were made by the first call only
    assert dynamo_limit() == 128 == applied["dynamo_recompile_limit"]
    assert memfit.configure_runtime(Stack.from_spec("lora"))["dynamo_recompile_limit"] == 128  # never lowered
    assert dynamo_limit() == 128 and sdpa_calls == [False]


def test_runtime_needs_is_a_protocol_hook_and_unknown_needs_are_refused(fresh_process):
    from memfit.strategies import CompileLayers

    assert "runtime_needs" in HOOKS and "runtime_needs" in hooks_of(CompileLayers())

    class Greedy:
        name, phase = "greedy", 99

        def runtime_needs(self):
            return {"gpu_count": 9}

    with pytest.raises(ValueError, match="unknown runtime need 'gpu_count'"):
        memfit.configure_runtime([Greedy()])
