"""configure_runtime: the one place process-wide settings are made, including what strategies declare."""

from __future__ import annotations

import torch

import memfit
from memfit import Stack


def test_configure_runtime_sets_allocator_sdpa_and_declared_dynamo_limit(monkeypatch):
    import torch._dynamo

    monkeypatch.delenv("PYTORCH_CUDA_ALLOC_CONF", raising=False)
    key = next(k for k in ("recompile_limit", "cache_size_limit") if hasattr(torch._dynamo.config, k))
    monkeypatch.setattr(torch._dynamo.config, key, 8)
    monkeypatch.setattr(torch.backends.cuda, "enable_cudnn_sdp", lambda on: calls.append(on))
    calls: list[bool] = []
    applied = memfit.configure_runtime(Stack.from_spec("lora+compile"))
    assert applied["PYTORCH_CUDA_ALLOC_CONF"] == "expandable_segments:True"
    assert calls == [False] and getattr(torch._dynamo.config, key) == 128 == applied["dynamo_recompile_limit"]
    monkeypatch.setattr(torch._dynamo.config, key, 8)
    assert "dynamo_recompile_limit" not in memfit.configure_runtime(Stack.from_spec("lora"))
    assert getattr(torch._dynamo.config, key) == 8  # nothing declared it: left alone
