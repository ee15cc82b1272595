"""Every supported family (memfit/core/families.py) is built by memfit as its own class with transformers' own
logits, planned with its own memory terms, and taken by the same `--model-config` flag; unsupported families are
refused in one line, not built as a Llama."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

import memfit
from memfit import Stack
from memfit.models import ModelError, describe_model, load_config, load_model
from _families import BATCH, CLASSES, FAMILY_TYPES, family_json, family_model

SHIPPED = {"qwen2.5-3b": "qwen2", "qwen3-4b": "qwen3", "mistral-7b-v0.3": "mistral", "gemma-2-2b": "gemma2",
           "phi-3.5-mini": "phi3"}


@pytest.fixture(scope="module")
def config_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("families")
    return {t: family_json(folder, t) for t in FAMILY_TYPES}


@pytest.mark.parametrize("model_type", FAMILY_TYPES)
def test_a_config_builds_its_own_class_with_transformers_own_logits(config_files, model_type):
    model = load_model(config_files[model_type], random_init=True)
    reference = family_model(model_type)  # AutoModelForCausalLM.from_config, same seed
    assert type(model).__name__ == CLASSES[model_type] == type(reference).__name__
    described = describe_model(model)
    assert described["model_class"] == CLASSES[model_type] and described["family"] == model_type
    assert described["attention"].startswith("eager" if model_type == "gemma2" else "sdpa")
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=BATCH["input_ids"]).logits,
                                   reference(input_ids=BATCH["input_ids"]).logits, rtol=0, atol=0)


@pytest.mark.parametrize("model_type, needle", [("gpt2", "memfit has no description of its layers"),
                                                ("gemma3", "multimodal Gemma 3"),
                                                (None, "names no model_type")])
def test_an_unsupported_family_is_refused_in_one_line(tmp_path, model_type, needle):
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({"model_type": model_type, "hidden_size": 64} if model_type else {"hidden_size": 64}))
    for build in (lambda: load_model(str(path), random_init=True), lambda: load_config(str(path))):
        with pytest.raises(ModelError, match=rf"is not supported: .*{needle}.*supported families: llama") as info:
            build()
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="not supported"):  # the memory model refuses a config handed to it
        memfit.estimate(Stack.from_spec("lora"), SimpleNamespace(model_type=model_type), 64)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_configs_are_taken_by_name_and_planned_as_their_family(name):
    config = load_config(name)
    assert config.model_type == SHIPPED[name]
    est = memfit.estimate(Stack.from_spec("lora:targets=all-linear+bf16"), config, 512)
    owners = {t.owner for t in est.terms.values()}
    assert SHIPPED[name] in owners and "llama" not in owners


def test_the_lora_estimate_counts_phi3s_fused_adapters():
    from transformers import AutoModelForCausalLM

    config = load_config("phi-3.5-mini")
    est = memfit.estimate(Stack.from_spec("lora:targets=all-linear"), config, 512)
    with torch.device("meta"):  # the estimate's adapter count is what peft really adds on the real shapes
        model = AutoModelForCausalLM.from_config(config)
    stack = Stack.from_spec("lora:targets=all-linear")
    model = stack.apply_model(model, stack.context("meta"))
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == est.trainable_params


def test_memfit_estimate_takes_a_shipped_family_by_name(capsys):
    from memfit.cli import main

    assert main(["estimate", "--architecture", "gemma-2-2b", "--stack", "lora+bf16+cce", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "gemma2" in out and " llama" not in out  # the family's own terms, not Llama's


def test_train_takes_model_config_as_the_same_flag_as_architecture(config_files):
    from memfit.cli.train import parse_config

    assert parse_config(["--model-config", config_files["qwen3"]]).model.config == config_files["qwen3"]
    assert parse_config(["--architecture", config_files["phi3"]]).model.config == config_files["phi3"]
