"""Gemma 3 through the CLI: a text config (Gemma3ForCausalLM, model_type gemma3_text) trains, plans and estimates
with its own class and its own memory terms; a multimodal config (Gemma3ForConditionalGeneration, model_type gemma3)
is refused in one line by every command, naming the text model to use instead."""

from __future__ import annotations

import json

import pytest
import yaml

from memfit.cli import main
from _families import family_json, family_values


VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=28,
              patch_size=14)


@pytest.fixture
def text_config(tmp_path) -> str:
    return family_json(tmp_path, "gemma3_text", vocab_size=512)  # room for the tiny tokenizer's ids


@pytest.fixture
def multimodal_config(tmp_path) -> str:
    text = {k: v for k, v in family_values("gemma3_text").items() if k != "model_type"}
    path = tmp_path / "gemma3.json"
    path.write_text(json.dumps({"model_type": "gemma3", "text_config": text, "vision_config": VISION}))
    return str(path)


def test_a_gemma3_text_config_estimates_with_its_own_terms(text_config, capsys):
    assert main(["estimate", "--model-config", text_config, "--stack", "lora+gc", "--seq-len", "64",
                 "--device", "cpu"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    owners = {row[2] for row in rows if len(row) > 3 and row[1] in ("static", "token")}
    assert owners == {"gemma3_text"}
    assert any(row[0] == "scaled_embeddings" for row in rows)  # Gemma's sqrt(hidden) scaling is counted


def test_a_gemma3_text_config_plans_by_probing_its_own_class(text_config, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MEMFIT_CACHE", str(tmp_path / "cache"))
    assert main(["plan", "--model-config", text_config, "--stack", "lora+gc", "--seq-len", "64",
                 "--cpu-budget-gib", "0.05", "--max-micro-batch", "4", "--fresh"]) == 0
    out = capsys.readouterr().out
    assert "gemma3_text" in out and "max micro-batch 4" in out  # probed to the cap, terms owned by the family


def test_a_gemma3_text_config_trains_as_gemma3_for_causal_lm(text_config, tmp_path, monkeypatch, tiny_tokenizer,
                                                             notes):
    monkeypatch.setenv("MEMFIT_CACHE", str(tmp_path / "cache"))
    tokenizer = tmp_path / "tokenizer"
    tiny_tokenizer.save_pretrained(tokenizer)
    recipe = tmp_path / "run.yaml"
    recipe.write_text(yaml.safe_dump(dict(
        sources=[{"kind": "text", "path": str(notes)}], model_config=text_config, tokenizer=str(tokenizer),
        stack="lora:targets=all-linear", output_dir=str(tmp_path / "runs"), run_name="g3", seq_len=32, micro_batch=2,
        target_effective_batch=4, max_steps=2, eval_context=32, eval_max_tokens=64, progress=False, log_with=None)))
    assert main(["train", str(recipe)]) == 0
    results = json.loads((tmp_path / "runs" / "g3" / "results.json").read_text())
    assert results["model_class"] == "Gemma3ForCausalLM" and results["model_family"] == "gemma3_text"
    assert results["train"]["steps"] == 2


@pytest.mark.parametrize("command", [["estimate", "--device", "cpu", "--seq-len", "64"],
                                     ["plan", "--seq-len", "64", "--cpu-budget-gib", "0.05"],
                                     ["train", "--max-steps", "1"]])
def test_a_multimodal_gemma3_config_is_refused_in_one_line(multimodal_config, command, capsys):
    assert main([*command, "--model-config", multimodal_config]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "multimodal Gemma 3" in err[0] and "gemma3_text" in err[0]
