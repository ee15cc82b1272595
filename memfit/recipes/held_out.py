"""The job's evaluation phase: the held-out sample scored with one set of settings before and after training."""
from __future__ import annotations

from typing import Optional


def sample_chunk(context: int, max_tokens: Optional[int]) -> int:
    """Tokens per sampled piece of the test documents: the window, but never more than the token sample itself, so
    `eval_max_tokens` bounds what is scored even when the window is longer (one 21,976-token piece was scored for a
    4,096-token sample before)."""
    return min(context, max_tokens) if max_tokens else context


def fitted_context(context: int, max_positions: Optional[int], say) -> int:
    """The evaluation window, clamped to what the model can attend to (with a line saying so): a window beyond
    max_position_embeddings would score positions the model never learned."""
    if max_positions and context > max_positions:
        say(f"note: eval_context {context} exceeds the model's max_position_embeddings ({max_positions}): "
            f"evaluating with {max_positions}-token windows")
        return max_positions
    return context
