"""The three-number quality report: original at full precision, base as trained, fine-tuned."""
from __future__ import annotations

import logging
from types import SimpleNamespace

from memfit import Stack
from memfit.recipes.quality import changes_base_weights, original_result, quality_fields, quality_rows, \
    warn_if_regressed


def _res(ppl: float) -> SimpleNamespace:
    return SimpleNamespace(perplexity=ppl, bits_per_byte=1.0)


def test_only_stacks_that_alter_the_weights_need_a_separate_original():
    assert not changes_base_weights(Stack.from_spec("lora+gc+ga8"))
    assert changes_base_weights(Stack.from_spec("lora+bf16+gc"))
    base, scored = _res(27.7), []

    def evaluate(model, label):
        scored.append((model, label))
        return _res(21.5)

    assert original_result(base, Stack.from_spec("lora+gc"), False, lambda: "fp32 model", evaluate) is base
    assert original_result(base, Stack.from_spec("lora+bf16"), True, lambda: "fp32 model", evaluate) is base
    assert scored == []  # random weights have no original to compare with
    assert original_result(base, Stack.from_spec("lora+bf16"), False, lambda: "fp32 model", evaluate).perplexity == 21.5
    assert scored == [("fp32 model", "original (full precision)")]


def test_declared_weight_lossiness_decides_the_full_precision_evaluation_also_for_a_plugin():
    from typing import ClassVar

    from pydantic import BaseModel

    from memfit.core.protocol import LOSSY_MOMENTS, LOSSY_WEIGHTS_4BIT, strategy_config

    class PluginQuantizer(BaseModel):  # what a third-party 3-bit quantizer declares
        model_config = strategy_config()
        name: ClassVar[str] = "plugin_quant3"
        phase: ClassVar[int] = 10
        lossiness: ClassVar[int] = LOSSY_WEIGHTS_4BIT + 1

        def describe(self):
            return "3-bit weights"

    class MomentsOnly(PluginQuantizer):
        name: ClassVar[str] = "plugin_moments"
        lossiness: ClassVar[int] = LOSSY_MOMENTS

    lora = list(Stack.from_spec("lora+gc"))
    assert changes_base_weights(Stack([*lora, PluginQuantizer()]))
    assert not changes_base_weights(Stack([*lora, MomentsOnly()]))  # the base weights stay the original's
    assert changes_base_weights(Stack.from_spec("lora+q4")) and changes_base_weights(Stack.from_spec("lora+q8"))


def test_headline_is_against_the_original_and_a_regression_is_flagged(caplog):
    # the measured GPU case: a 4-bit base 27.72, fine-tuned 21.32, the fp32 original 21.48
    r = quality_fields(_res(21.48), _res(27.72), _res(21.32))
    assert round(r["perplexity_change_pct"], 1) == -0.7 and round(r["change_vs_base_pct"], 1) == -23.1
    assert round(r["precision_cost_pct"], 1) == 29.1 and r["regression"] is False
    rows = dict(quality_rows(r))
    assert rows["held-out perplexity change"] == "-0.7 % against the original model"
    assert "costs +29.1 %" in rows["base as trained"]

    worse = quality_fields(_res(20.0), _res(20.0), _res(24.4))
    assert worse["regression"] is True
    assert "REGRESSION" in dict(quality_rows(worse))["held-out perplexity change"]
    assert "same weights as the original" in dict(quality_rows(worse))["base as trained"]
    with caplog.at_level(logging.WARNING):
        warn_if_regressed(worse)
    assert "REGRESSION" in caplog.text and "+22.0 %" in caplog.text
