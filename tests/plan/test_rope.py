"""--rope-scaling: parsed as transformers configures it, validated, and refused when it would not extend the context."""

from __future__ import annotations

import json

import pytest
import torch

from memfit.plan.rope import RopeScalingError, config_overrides, parse_rope_scaling, scaled_config
from _models import REPO, tiny_config


def _llama31():
    from transformers import AutoConfig

    return AutoConfig.for_model(**json.loads((REPO / "memfit/configs/llama-3.1-8b.json").read_text()))


def test_spec_and_json_forms_parse_to_the_same_parameters():
    assert parse_rope_scaling("yarn:factor=4") == parse_rope_scaling('{"type": "yarn", "factor": 4}') == \
        {"rope_type": "yarn", "factor": 4.0}
    assert parse_rope_scaling("yarn:factor=4,max_position_embeddings=200000")["max_position_embeddings"] == 200000


@pytest.mark.parametrize("text, says", [
    ("default:factor=4", "does not extend"), ("yarn", "factor > 1"), ("yarn:factor=1", "factor > 1"),
    ("yarn:factor=nan", "finite"), ("yarn:factor=inf", "finite"), ("yarn:factor", "key=value"),
    ("yarn:factor=four", "not a number"), ("{not json", "not valid JSON"), ("[1, 2]", "JSON object"),
])
def test_bad_scalings_are_refused_in_one_line(text, says):
    with pytest.raises(RopeScalingError, match=says) as err:
        parse_rope_scaling(text)
    assert "\n" not in str(err.value)


def test_llama3_keeps_its_parameters_and_reaches_factor_times_its_original_maximum():
    config = scaled_config(_llama31(), parse_rope_scaling("llama3:factor=32"))
    params = config.rope_parameters
    assert params["rope_type"] == "llama3" and params["factor"] == 32.0
    assert params["low_freq_factor"] == 1.0 and params["original_max_position_embeddings"] == 8192
    assert config.max_position_embeddings == 32 * 8192


def test_another_type_scales_the_current_maximum():
    config = scaled_config(_llama31(), parse_rope_scaling("yarn:factor=3"))
    assert config.max_position_embeddings == 3 * 131072
    assert config.rope_parameters["original_max_position_embeddings"] == 131072
    assert config.rope_parameters["rope_theta"] == 500000.0


def test_a_scaling_that_does_not_pass_the_native_maximum_is_refused():
    with pytest.raises(RopeScalingError, match="not past the model's 131,072"):
        scaled_config(_llama31(), parse_rope_scaling("llama3:factor=8"))  # the checkpoint's own scaling
    with pytest.raises(RopeScalingError, match="past what the scaling covers"):
        scaled_config(_llama31(), parse_rope_scaling("yarn:factor=2,max_position_embeddings=999999"))


def test_transformers_validation_is_enforced_not_only_logged():
    with pytest.raises(RopeScalingError, match="rejected by transformers"):
        scaled_config(_llama31(), parse_rope_scaling("longrope:factor=4"))  # longrope needs short/long factors


def test_the_scaled_model_runs_past_its_native_positions():
    from transformers import AutoModelForCausalLM

    config = tiny_config(max_position_embeddings=64)
    overrides = config_overrides(config, parse_rope_scaling("yarn:factor=4"))
    for key, value in overrides.items():
        setattr(config, key, value)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    ids = torch.randint(0, 128, (1, 200))
    assert torch.isfinite(model(input_ids=ids, labels=ids).loss)
    assert model.config.max_position_embeddings == 256
