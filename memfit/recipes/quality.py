"""The three perplexities of a fine-tune report, on the same held-out tokens: the original model at full precision,
the base as trained (e.g. 4-bit or bf16), and the fine-tuned model.

Why three: a 4-bit base can be ~30 % worse than the model the user started from, so "final vs base" credits the
adapter for winning back what quantization cost. The headline change is therefore final vs *original*, the cost of
the training precision is reported on its own, and a fine-tune that ends worse than the original is flagged.
"""
from __future__ import annotations

import gc
import logging
import math
from typing import Any, Callable

import torch

from ..core.protocol import LOSSY_WEIGHTS_8BIT, auto_traits
from ..core.stack import Stack

log = logging.getLogger(__name__)


def changes_base_weights(stack: Stack) -> bool:
    """True when the stack trains on other weights than the fp32 original: a strategy declares a loss in the weights
    (its `lossiness`, from 8-bit weights up: the built-in quantizers and any plugin one), or the compute dtype casts
    them to bf16/fp16. Lossy optimizer moments leave the base weights as they are."""
    lossy_weights = any(auto_traits(s)["lossiness"] >= LOSSY_WEIGHTS_8BIT for s in stack)
    return lossy_weights or stack.compute_dtype != torch.float32


def original_result(base, stack: Stack, random_init: bool, load_original: Callable[[], Any],
                    evaluate: Callable[[Any, str], Any]):
    """The original model's evaluation: the base's own when the stack keeps its weights as they are (or the weights
    are random, so there is no original to speak of); otherwise a fresh full-precision copy scored and freed."""
    if random_init or not changes_base_weights(stack):
        return base
    model = load_original()
    result = evaluate(model, "original (full precision)")
    del model
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return result


def pct(new: float, old: float) -> float:
    return 100.0 * (new / old - 1.0)


def quality_fields(original, base, final) -> dict[str, Any]:
    """results.json fields; `perplexity_change_pct` (the headline) is against the original."""
    change = pct(final.perplexity, original.perplexity)
    return {
        "original_perplexity": original.perplexity,
        "base_perplexity": base.perplexity,
        "final_perplexity": final.perplexity,
        "perplexity_change_pct": change,
        "change_vs_base_pct": pct(final.perplexity, base.perplexity),
        "precision_cost_pct": pct(base.perplexity, original.perplexity),
        "regression": change > 0.0,
        "original_bits_per_byte": original.bits_per_byte,
        "base_bits_per_byte": base.bits_per_byte,
        "final_bits_per_byte": final.bits_per_byte,
    }


def warn_if_regressed(r: dict[str, Any]) -> None:
    if r["regression"]:
        log.warning(f"REGRESSION: the fine-tuned model is {r['perplexity_change_pct']:+.1f} % worse than the original "
                    f"model ({r['final_perplexity']:.3f} vs {r['original_perplexity']:.3f} held-out perplexity); "
                    "more or more varied training data, a lower --lr or fewer steps usually fix this")


def quality_rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    """The summary's perplexity rows, headline first."""
    def ppl(key: str) -> str:
        return f"{r[key + '_perplexity']:.3f} ({r[key + '_bits_per_byte'] or math.nan:.4f} bits/byte)"

    flag = " **REGRESSION: worse than the original model**" if r["regression"] else ""
    same = abs(r["precision_cost_pct"]) < 1e-9
    return [
        ("held-out perplexity change", f"{r['perplexity_change_pct']:+.1f} % against the original model{flag}"),
        ("original model (full precision)", ppl("original")),
        ("base as trained", ppl("base") + (" (same weights as the original)" if same else
                                           f"; the training precision costs {r['precision_cost_pct']:+.1f} %")),
        ("fine-tuned", ppl("final") + f"; {r['change_vs_base_pct']:+.1f} % against the base as trained"),
    ]
