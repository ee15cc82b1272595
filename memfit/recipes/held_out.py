"""The job's evaluation phase: one held-out sample, scored with one set of settings before and after training (and
for the original model), so the numbers of a run compare like with like."""
from __future__ import annotations

import logging
import math
from typing import Any, Callable, Optional

from ..evaluation import has_label_mask, perplexity
from .finetune_data import sample_documents
from .sections import EvalSection

log = logging.getLogger(__name__)


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


class HeldOut:
    """The held-out documents of one split (test, or validation), or an evenly spaced sample of them, and the scorer
    every evaluation of that split uses."""

    def __init__(self, test, tokenizer, settings: EvalSection, accelerator, progress: bool,
                 say: Callable[[str], None], split: str = "test"):
        self.settings, self.accelerator, self.progress, self.say = settings, accelerator, progress, say
        self.pad_token_id = tokenizer.pad_token_id
        chunk = sample_chunk(settings.eval_context, settings.eval_max_tokens)
        self.pieces, self.info = sample_documents(test, tokenizer, settings.eval_max_tokens, chunk, split)
        # chat / prompt-completion data trained on the answers only: score what training scored, all tokens beside it
        self.masked = has_label_mask(self.pieces)
        self.all_tokens: dict[str, dict[str, Any]] = {}

    @property
    def scored(self) -> str:
        return "answer tokens" if self.masked else "all tokens"

    def score(self, model, label: str):
        s = self.settings
        common = dict(context_length=s.eval_context, stride=s.eval_stride, batch_size=s.eval_batch_size,
                      accelerator=self.accelerator, progress=self.progress, pad_token_id=self.pad_token_id)
        res = perplexity(model, self.pieces, only_labels=self.masked, **common)
        scored = "answer tokens (what the loss trained on)" if self.masked else "tokens"
        self.say(f"{label} perplexity {res.perplexity:.3f} ({res.bits_per_byte or math.nan:.4f} bits/byte, "
                 f"{res.tokens:,} {scored})")
        if self.masked:
            every = perplexity(model, self.pieces, **common)
            self.all_tokens[label] = every.to_dict()
            self.say(f"{label} perplexity over all tokens {every.perplexity:.3f} ({every.tokens:,} tokens)")
        return res

    def split_record(self, base, final: dict[str, Any], every: Optional[int]) -> dict[str, Any]:
        """results.json's "validation" entry: the split's perplexity before and after training (`final`: the last
        periodic evaluation's dict when it scored the trained model), apart from the test numbers."""
        before, after = base.perplexity, final["perplexity"]
        change = 100.0 * (after - before) / before if before and math.isfinite(before) else None
        return {**self.info, "base": base.to_dict(), "final": final, "change_pct": change,
                "scored": "answer tokens" if self.masked else "all tokens",
                "evaluated": (f"every {every} step{'s' * (every > 1)} (train.evals)" if every else
                              "before and after training")}

    def record(self, original, base, final) -> dict[str, Any]:
        """results.json's "evaluation" entry."""
        return {**self.info, "context_length": final.context_length, "stride": final.stride,
                "scored_tokens": final.tokens, "scored_bytes": final.bytes, "original": original.to_dict(),
                "base": base.to_dict(), "final": final.to_dict(),
                "scored": self.scored, "all_tokens": self.all_tokens or None}
