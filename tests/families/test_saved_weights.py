"""Saved (random) weights per family: Gemma 2 and Phi-3 load from a checkpoint folder and train; every family's
saved adapter reloads through the checked loader and merges to the trained logits."""

from __future__ import annotations

import pytest
import torch

import memfit
from memfit import Stack, TrainConfig
from memfit.models import describe_model, load_model
from _families import BATCH, CLASSES, FAMILY_TYPES, family_model
from _models import random_blocks


@pytest.mark.parametrize("model_type", ["gemma2", "phi3"])
def test_saved_weights_of_gemma2_and_phi3_load_and_train(tmp_path, model_type):
    saved = family_model(model_type, seed=3)
    saved.save_pretrained(tmp_path)  # "real" weights: a saved checkpoint, loaded through from_pretrained
    stack = Stack.from_spec("lora:targets=all-linear,dropout=0+cce:chunk=16")
    model = load_model(str(tmp_path), stack)
    assert describe_model(model)["model_class"] == CLASSES[model_type]
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=BATCH["input_ids"]).logits,
                                   saved(input_ids=BATCH["input_ids"]).logits)  # B = 0: the saved model's logits
    result = memfit.train(model, stack, random_blocks(4, 32), TrainConfig(micro_batch=2, max_steps=2, lr=1e-2,
                                                                         warmup=0, progress=False))
    assert len(result.losses) == 2 and all(torch.isfinite(torch.tensor(result.losses)))


@pytest.mark.parametrize("model_type", FAMILY_TYPES)
def test_a_saved_adapter_reloads_and_merges_to_the_trained_logits(tmp_path, model_type):
    """memfit's save (saving.py) -> checked load (checkpoint.load_adapter) -> merge, as `memfit eval` and `memfit merge`
    do it: the reloaded adapter and the merged plain model give the trained model's logits, per family."""
    from memfit.training.checkpoint import load_adapter

    stack = Stack.from_spec("lora:targets=all-linear,dropout=0")
    model = stack.apply_model(family_model(model_type), stack.context("cpu"))
    memfit.train(model, stack, random_blocks(4, 32), TrainConfig(micro_batch=2, max_steps=2, lr=5e-2, warmup=0,
                                                                 progress=False, output_dir=str(tmp_path),
                                                                 checkpoint_every=None))
    model.eval()
    with torch.no_grad():
        trained = model(input_ids=BATCH["input_ids"]).logits
        reloaded = load_adapter(family_model(model_type), tmp_path / "adapter").eval()
        torch.testing.assert_close(reloaded(input_ids=BATCH["input_ids"]).logits, trained)
        merged = reloaded.merge_and_unload()
        assert type(merged).__name__ == CLASSES[model_type]
        torch.testing.assert_close(merged(input_ids=BATCH["input_ids"]).logits, trained, rtol=1e-4, atol=1e-4)
        base = family_model(model_type)(input_ids=BATCH["input_ids"]).logits
    assert not torch.allclose(trained, base)  # the adapter changed the model: the round trip is not trivially equal
