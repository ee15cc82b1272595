"""Process-wide settings, in one explicit place: `configure_runtime`. Library functions (load_model, the strategies)
never change them; the CLI and the fine-tune recipe call it before any model exists, and every place that puts a
stack on a model (the recipe, bench, the auto search's candidates) calls it again with that stack.

It is idempotent: memfit's own settings (allocator, SDPA) are made once per process, and what strategies declare
through the `runtime_needs` hook (memfit.core.protocol.HOOKS; keys in NEEDS) is applied as the union of every stack
seen so far, the largest value of each need winning, so a later call never lowers what an earlier stack needed.
Why process-wide rather than scoped: dynamo reads its recompile limit whenever a compiled part meets a new shape,
which happens in later training steps and in evaluation, long after the stack was applied.
"""

from __future__ import annotations

import os
from typing import Any, Iterable

import torch

NEEDS = {"dynamo_recompile_limit": "dynamo's recompile limit (config.recompile_limit / cache_size_limit), raised"}
_process: dict[str, Any] = {}  # memfit's own settings, once made
_needs: dict[str, int] = {}  # the union of the needs declared so far


def declared_needs(strategies: Iterable[Any]) -> dict[str, int]:
    """The union of the `runtime_needs` of these strategies (a Stack, or strategies of several stacks)."""
    from .core.protocol import hooks_of

    union: dict[str, int] = {}
    for s in strategies or ():
        if "runtime_needs" not in hooks_of(s):
            continue
        for key, value in s.runtime_needs().items():
            if key not in NEEDS:
                raise ValueError(f"strategy {s.name!r} declares an unknown runtime need {key!r}; known: "
                                 f"{', '.join(NEEDS)}")
            union[key] = max(union.get(key, 0), value)
    return union


def configure_runtime(stack: Any = None, *, cudnn_sdpa: bool = False, expandable_segments: bool = True) -> dict[str, Any]:
    """Apply memfit's process-wide settings (the first call) and the stack's declared needs; return what is in force.

    expandable_segments: CUDA allocator segments that grow (PYTORCH_CUDA_ALLOC_CONF); after many OOMs fixed-size
        segments fragment, expandable ones do not. Takes effect only before CUDA initialises, and a user's own
        PYTORCH_CUDA_ALLOC_CONF wins.
    cudnn_sdpa: torch 2.11's cuDNN attention failed a backward on the H100 (Llama-3.2-3B, seq 2048: "mha_graph.execute
        ... is_good()", not an OOM) mid-plan; flash / memory-efficient SDPA are as fast there and never did. Off.
    stack: a Stack or strategies whose declared needs to apply, e.g. {"dynamo_recompile_limit": 128} from compile.
    """
    if not _process:
        if expandable_segments:
            _process["PYTORCH_CUDA_ALLOC_CONF"] = os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF",
                                                                        "expandable_segments:True")
        torch.backends.cuda.enable_cudnn_sdp(cudnn_sdpa)
        _process["cudnn_sdpa"] = cudnn_sdpa
    for key, value in declared_needs(stack).items():
        if value > _needs.get(key, 0):
            _needs[key] = value
            _raise_dynamo_limit(value)
    return {**_process, **_needs}


def _raise_dynamo_limit(limit: int) -> None:
    import torch._dynamo as dynamo

    for key in ("cache_size_limit", "recompile_limit"):  # renamed in torch 2.6; set whichever exists
        if hasattr(dynamo.config, key):
            setattr(dynamo.config, key, max(getattr(dynamo.config, key), limit))
