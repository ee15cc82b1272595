"""Issue 17, the run directory: resuming onto a base model that changed, and an output folder that stops accepting
writes in the middle of a run. Two tiny runs each, end to end through memfit.train into the same output_dir."""

from __future__ import annotations

import builtins
import errno
import json
import os
from contextlib import contextmanager
from pathlib import Path

import pytest
import safetensors.torch
import torch

import memfit
from memfit import Stack, TrainConfig
from memfit.training import checkpoint
from memfit.training.checkpoint import STATE_FILE, CheckpointError, list_checkpoints
from memfit.core.integrity import MANIFEST
from _models import random_blocks, tiny_model


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: a second thread only adds OpenMP barrier waits on a busy machine
    yield
    torch.set_num_threads(before)


def _train(out: Path, model=None, spec: str = "lora+ga2", **overrides):
    stack = Stack.from_spec(spec)
    model = stack.apply_model(model or tiny_model(), stack.context("cpu"))
    cfg = dict(micro_batch=2, max_steps=4, lr=1e-2, progress=False, save_adapter=False, output_dir=str(out),
               checkpoint_every=2)
    return model, memfit.train(model, stack, random_blocks(8, 16), TrainConfig(**{**cfg, **overrides}))


# ---- resume onto a changed base model --------------------------------------------------------------------------------

@pytest.mark.parametrize("change, named", [
    (dict(hidden_size=96), r"model hidden_size \(64 there, 96 here\)"),  # was: a raw "size mismatch" traceback
    (dict(num_hidden_layers=3), r"model num_hidden_layers \(2 there, 3 here\)"),
    (dict(vocab_size=160), r"model vocab_size \(128 there, 160 here\)"),  # was: silently resumed (LoRA on attention)
    (dict(intermediate_size=256), r"model intermediate_size \(128 there, 256 here\)"),  # was: silently resumed
])
def test_resume_onto_a_base_model_whose_config_changed_is_refused_naming_the_keys(tmp_path, change, named):
    _train(tmp_path)
    before = {p.name: (p / STATE_FILE).read_bytes() for p in list_checkpoints(tmp_path / "checkpoints")}
    model = tiny_model(**change)
    forwards = []
    model.register_forward_pre_hook(lambda *_: forwards.append(1))
    with pytest.raises(CheckpointError, match=rf"belongs to a different run \(another base model\): .*{named}.*"
                                              r"load the base model it was trained on; to start a new run, pass "
                                              r"another run_name/output_dir") as info:
        _train(tmp_path, model=model)
    assert "\n" not in str(info.value) and forwards == []  # one line, refused before any training
    assert {p.name: (p / STATE_FILE).read_bytes() for p in list_checkpoints(tmp_path / "checkpoints")} == before


def test_a_checkpoint_without_the_model_shape_still_names_the_mismatch_instead_of_size_mismatch(tmp_path):
    _train(tmp_path)
    for folder in list_checkpoints(tmp_path / "checkpoints"):  # as written before the shape was in the fingerprint
        state = json.loads((folder / STATE_FILE).read_text())
        state["fingerprint"] = {k: v for k, v in state["fingerprint"].items() if not k.startswith("model ")}
        (folder / STATE_FILE).write_text(json.dumps(state))
        (folder / MANIFEST).unlink()  # nor checksums (memfit.core.integrity)
    with pytest.raises(CheckpointError, match=r"written for a model of another shape \(.*q_proj.lora_A.* \[8, 64\] "
                                              r"there, \[8, 96\] here\): load its base model, or pass another "
                                              r"run_name/output_dir"):
        _train(tmp_path, model=tiny_model(hidden_size=96))
    _, res = _train(tmp_path, max_steps=6)  # the same base still resumes from such a checkpoint
    assert res.resumed_from.endswith("step-00000004") and res.steps == 6


# ---- the output folder stops accepting writes mid-run ----------------------------------------------------------------

@contextmanager
def _read_only(root: Path):
    """What a read-only (or full) folder does to every way memfit and its libraries create files there. Tests run as
    root, for whom chmod changes nothing, so the refusals are made in Python: creating or renaming entries fails."""
    root, real = str(root), dict(open=builtins.open, os_open=os.open, mkdir=os.mkdir, rename=os.rename,
                                 replace=os.replace, save_file=safetensors.torch.save_file, save=torch.save)

    def under(path) -> bool:
        return isinstance(path, (str, os.PathLike)) and os.path.abspath(os.fspath(path)).startswith(root)

    def refuse(path):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))

    def guard(name, writes=lambda *a, **k: True):
        def call(path, *args, **kwargs):
            if under(path) and writes(*args, **kwargs):
                refuse(path)
            return real[name](path, *args, **kwargs)
        return call

    def save(obj, f, *args, **kwargs):
        return refuse(f) if under(f) else real["save"](obj, f, *args, **kwargs)

    def save_file(tensors, filename, *args, **kwargs):
        return refuse(filename) if under(filename) else real["save_file"](tensors, filename, *args, **kwargs)

    creating = os.O_WRONLY | os.O_RDWR | os.O_CREAT
    patches = {(builtins, "open"): guard("open", lambda mode="r", *a, **k: any(c in mode for c in "wax+")),
               (os, "open"): guard("os_open", lambda flags, *a, **k: bool(flags & creating)),
               (os, "mkdir"): guard("mkdir"), (os, "rename"): guard("rename"), (os, "replace"): guard("replace"),
               (torch, "save"): save, (safetensors.torch, "save_file"): save_file}
    with pytest.MonkeyPatch.context() as mp:
        for (module, name), fake in patches.items():
            mp.setattr(module, name, fake)
        yield


def test_output_folder_turning_read_only_mid_run_keeps_the_last_checkpoint_and_says_so(tmp_path, monkeypatch):
    _, reference = _train(tmp_path / "ref", max_steps=6)
    real_save, calls = checkpoint.Checkpointer.save, []

    def save(self, state, model):  # the folder turns read-only after the first checkpoint (step 2)
        calls.append(state.step)
        if len(calls) < 2:
            return real_save(self, state, model)
        with _read_only(tmp_path / "run"):
            return real_save(self, state, model)

    monkeypatch.setattr(checkpoint.Checkpointer, "save", save)
    with pytest.raises(CheckpointError) as info:
        _train(tmp_path / "run", max_steps=6)
    message = str(info.value)
    assert "\n" not in message and "writing checkpoint step-00000004" in message
    assert "Permission denied (errno 13)" in message and "step-00000002 is intact and resume uses it" in message
    assert calls == [2, 4]
    left = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert left == ["step-00000002"]  # no .tmp-step-00000004, no half-written checkpoint
    assert not [p for p in (tmp_path / "run").rglob("*") if ".tmp" in p.name]
    monkeypatch.undo()  # writable again: the same command continues from step 2 and ends where a clean run ends
    _, resumed = _train(tmp_path / "run", max_steps=6)
    assert resumed.resumed_from.endswith("step-00000002") and resumed.losses == reference.losses

