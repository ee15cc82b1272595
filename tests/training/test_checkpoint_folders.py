"""Damaged checkpoints (issue 30): named, set aside, the previous good one used, or the run refuses; never a silent
restart from step 0. Leftovers of killed saves are removed by the next run."""

from __future__ import annotations

import logging

import pytest

import memfit
from memfit import Stack, TrainConfig
from memfit.training.checkpoint import STATE_FILE, CheckpointError, list_checkpoints
from memfit.training.checkpoint_folders import checkpoint_problem
from _models import random_blocks, tiny_model


def _train(out, **overrides):
    stack = Stack.from_spec("lora+ga2")
    model = stack.apply_model(tiny_model(), stack.context("cpu"))
    cfg = dict(micro_batch=2, max_steps=4, lr=1e-2, progress=False, save_adapter=False, output_dir=str(out),
               checkpoint_every=2)
    return memfit.train(model, stack, random_blocks(8, 16, seed=3), TrainConfig(**{**cfg, **overrides}))


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


@pytest.mark.parametrize("damaged_file", [STATE_FILE, "model.safetensors", "optimizer.bin"])
def test_a_damaged_newest_checkpoint_is_named_and_the_previous_one_is_used(tmp_path, caplog, damaged_file):
    _train(tmp_path)
    ckpts = tmp_path / "checkpoints"
    _truncate(ckpts / "step-00000004" / damaged_file)
    assert damaged_file in checkpoint_problem(ckpts / "step-00000004")
    with caplog.at_level(logging.WARNING, logger="memfit.training.checkpoint"):
        res = _train(tmp_path, max_steps=6)
    assert res.resumed_from.endswith("step-00000002") and res.steps == 6 and len(res.losses) == 6
    assert any("step-00000004" in r.message and damaged_file in r.message for r in caplog.records)
    assert len(res.damaged_checkpoints) == 1 and res.damaged_checkpoints[0].startswith("step-00000004 (")
    assert damaged_file in res.damaged_checkpoints[0]
    assert (ckpts / "damaged-step-00000004").is_dir()  # kept for inspection, no longer a checkpoint
    assert [p.name for p in list_checkpoints(ckpts)] == ["step-00000004", "step-00000006"]  # written anew


def test_when_every_checkpoint_is_damaged_the_run_refuses(tmp_path):
    _train(tmp_path)
    ckpts = tmp_path / "checkpoints"
    for step in (2, 4):
        _truncate(ckpts / f"step-0000000{step}" / STATE_FILE, 0.3)
    with pytest.raises(CheckpointError, match=r"every checkpoint in .* is damaged: step-00000004 \(.*trainer_state.json "
                                              r".*\); step-00000002 .*Nothing was overwritten") as info:
        _train(tmp_path, max_steps=6)
    assert "\n" not in str(info.value)
    assert not list_checkpoints(ckpts)  # nothing new was written over them


def test_an_edited_file_of_the_same_size_fails_its_checksum(tmp_path):
    _train(tmp_path)
    state = tmp_path / "checkpoints" / "step-00000004" / STATE_FILE
    text = state.read_text()
    state.write_text(text.replace('"step": 4', '"step": 3'))
    assert "trainer_state.json does not match its recorded sha256" in checkpoint_problem(state.parent)


def test_leftovers_of_killed_saves_are_removed_by_the_next_run(tmp_path):
    _train(tmp_path)
    ckpts = tmp_path / "checkpoints"
    for junk in (".tmp-step-00000006", ".trash-step-00000002"):
        (ckpts / junk).mkdir()
        (ckpts / junk / "model.safetensors").write_bytes(b"half")
    _train(tmp_path, max_steps=6)
    assert sorted(p.name for p in ckpts.iterdir()) == ["step-00000004", "step-00000006"]
