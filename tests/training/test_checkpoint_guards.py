"""Checkpoint writes that fail for any reason, weights that must never reach disk, and checkpoints by time."""
import math

import accelerate.utils.other
import pytest
import torch
from pydantic import ValidationError
from safetensors import SafetensorError

import memfit
from memfit import Stack, TrainConfig
from memfit.training.checkpoint import CheckpointError, list_checkpoints
from memfit.training.loop import make_accelerator
from memfit.training.saving import save_trained
from _models import random_blocks, tiny_model


def _train(out, **overrides):
    stack = Stack.from_spec("lora+ga2")
    model = stack.apply_model(tiny_model(), stack.context("cpu"))
    cfg = dict(micro_batch=2, max_steps=4, lr=1e-2, progress=False, save_adapter=False, output_dir=str(out),
               checkpoint_every=2)
    return model, memfit.train(model, stack, random_blocks(8, 16, seed=3), TrainConfig(**{**cfg, **overrides}))


def test_safetensors_error_on_a_full_disk_becomes_checkpoint_error_and_the_temporary_folder_goes(tmp_path,
                                                                                                 monkeypatch):
    real = accelerate.utils.other.safe_save_file

    def full_disk(tensors, filename, *args, **kwargs):
        if ".tmp-step-00000004" in str(filename):  # the second checkpoint: safetensors' own error, not an OSError
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        return real(tensors, filename, *args, **kwargs)

    monkeypatch.setattr(accelerate.utils.other, "safe_save_file", full_disk)
    with pytest.raises(CheckpointError, match=r"step-00000004 .*SafetensorError: .*No space left on device.*the "
                                              r"previous checkpoint .*step-00000002 is intact"):
        _train(tmp_path)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-00000002"]


@pytest.mark.parametrize("lr", [math.inf, math.nan, 0.0, -1e-3])
def test_learning_rates_that_can_only_produce_garbage_are_refused(lr):
    with pytest.raises(ValidationError, match="lr"):
        TrainConfig(lr=lr)


def test_non_finite_weights_are_never_saved_as_adapter_or_checkpoint(tmp_path):
    stack = Stack.from_spec("lora")
    model = stack.apply_model(tiny_model(), stack.context("cpu"))
    name, weight = next((n, p) for n, p in model.named_parameters() if p.requires_grad)
    with torch.no_grad():
        weight.view(-1)[::2] = math.nan  # what `--lr inf` used to save: half the values NaN
    acc = make_accelerator(stack, 2, project_dir=str(tmp_path))
    with pytest.raises(CheckpointError, match=rf"not saving the trained weights .*{name}.*NaN/inf.*lower the learning"):
        save_trained(model, acc, tmp_path / "adapter")
    assert not (tmp_path / "adapter").exists()

    from memfit.training.checkpoint import Checkpointer, TrainState

    saver = Checkpointer(acc, model, tmp_path / "checkpoints", keep_last=2, fingerprint={})
    with pytest.raises(CheckpointError, match=r"not saving checkpoint step-00000001: .*NaN/inf"):
        saver.save(TrainState(step=1), model)
    assert list_checkpoints(tmp_path / "checkpoints") == []


def test_checkpoints_are_also_taken_by_time(tmp_path):
    # every step is "10 minutes later" for a limit of a few nanoseconds; by steps alone only step 4 would be saved
    _train(tmp_path, checkpoint_every=100, checkpoint_minutes=1e-10, keep_last=10)
    assert [p.name for p in list_checkpoints(tmp_path / "checkpoints")] == [f"step-0000000{i}" for i in (1, 2, 3, 4)]
    assert TrainConfig().checkpoint_minutes == 10.0


def test_adapter_is_swapped_in_whole(tmp_path):
    _, res = _train(tmp_path, save_adapter=True)
    names = {p.name for p in tmp_path.iterdir()}
    assert "adapter" in names and not any(n.startswith(".tmp-") or n.endswith((".tmp", ".old")) for n in names)
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file() and res.adapter_dir.endswith("adapter")
