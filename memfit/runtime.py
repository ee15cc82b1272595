"""Process-wide settings, in one explicit place: the CLI, the fine-tune recipe and the benchmarks call
`configure_runtime` once before any model exists. Library functions (load_model, strategies) never change them.

Strategies *declare* what they need with an optional `runtime_needs() -> dict` (keys below); the largest value of a
numeric need wins.
"""

from __future__ import annotations

import os
from typing import Any

import torch


def configure_runtime(stack: Any = None, *, cudnn_sdpa: bool = False, expandable_segments: bool = True) -> dict[str, Any]:
    """Apply memfit's process-wide settings and return what was set.

    expandable_segments: CUDA allocator segments that grow (PYTORCH_CUDA_ALLOC_CONF); after many OOMs fixed-size
        segments fragment, expandable ones do not. Takes effect only before CUDA initialises, and a user's own
        PYTORCH_CUDA_ALLOC_CONF wins.
    cudnn_sdpa: torch 2.11's cuDNN attention failed a backward on the H100 (Llama-3.2-3B, seq 2048: "mha_graph.execute
        ... is_good()", not an OOM) mid-plan; flash / memory-efficient SDPA are as fast there and never did. Off.
    stack: strategies' declared needs, e.g. {"dynamo_recompile_limit": 128} from compile_layers.
    """
    applied: dict[str, Any] = {}
    if expandable_segments:
        applied["PYTORCH_CUDA_ALLOC_CONF"] = os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    torch.backends.cuda.enable_cudnn_sdp(cudnn_sdpa)
    applied["cudnn_sdpa"] = cudnn_sdpa
    limit = max((s.runtime_needs().get("dynamo_recompile_limit", 0) for s in (stack or ())
                 if callable(getattr(s, "runtime_needs", None))), default=0)
    if limit:
        import torch._dynamo as dynamo

        for key in ("cache_size_limit", "recompile_limit"):  # renamed in torch 2.6; set whichever exists
            if hasattr(dynamo.config, key):
                setattr(dynamo.config, key, max(getattr(dynamo.config, key), limit))
        applied["dynamo_recompile_limit"] = limit
    return applied
