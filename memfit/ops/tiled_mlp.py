"""A per-token function (an MLP) run over chunks of tokens, each chunk checkpointed, so its intermediates exist for
one chunk at a time in forward and backward. The function is per-token, so this is exact: outputs equal, gradients
up to summation order. Cost: the function runs once more per chunk in backward."""

from __future__ import annotations

from typing import Callable

import torch
from torch.utils.checkpoint import checkpoint


def tiled_mlp(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tokens: int) -> torch.Tensor:
    """forward(x) computed `tokens` rows of x (flattened to [tokens, hidden]) at a time."""
    flat = x.reshape(-1, x.shape[-1])
    if not torch.is_grad_enabled() or flat.shape[0] <= tokens:
        return forward(x)  # evaluation, or a batch no larger than one tile: nothing to save
    # Each chunk keeps only its input (a view of x), and autograd runs one chunk's backward (recompute included)
    # before the next. torch's checkpoint restores autocast and RNG and lets the function's own trainable weights
    # (LoRA on gate/up/down) get gradients.
    out = torch.cat([checkpoint(forward, c, use_reentrant=False) for c in flat.split(tokens)])
    return out.view(*x.shape[:-1], out.shape[-1])
