"""memfit.recipes.results: results.json names the model's class and family; a rerun keeps the measured rate."""
import json

from memfit.recipes.results import keep_previous_rate, model_identity


def test_the_model_class_and_family_are_named(tiny_llama):
    assert model_identity(tiny_llama) == {"model_class": "LlamaForCausalLM", "model_family": "llama",
                                          "attention": "sdpa"}


def test_a_rerun_that_trained_nothing_keeps_the_earlier_rate(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps({"tokens_per_s": 250.0}))
    results = {"tokens_per_s": None, "train": {}}
    keep_previous_rate(results, tmp_path / "results.json")
    assert results["tokens_per_s"] == 250.0 and "earlier run" in results["train"]["tokens_per_s_note"]
    fresh = {"tokens_per_s": 100.0, "train": {}}
    keep_previous_rate(fresh, tmp_path / "results.json")
    assert fresh["tokens_per_s"] == 100.0
