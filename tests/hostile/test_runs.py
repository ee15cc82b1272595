"""Hostile user, finished runs (issue 30): each case once ended with exit 0 and a wrong result. Run as the user runs
it - `python -m memfit` in a folder of its own, on a tiny random Llama and five text notes (seconds each)."""
from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from _hostile import make_root, memfit, refused, results, save_base, tiny_tokenizer, train  # noqa: F401

ADAPTER = "adapter/adapter_model.safetensors"


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_tokenizer):  # noqa: F811
    """One finished 2-step run that the tests below leave as they found it."""
    root = make_root(tmp_path_factory.mktemp("finished"), tiny_tokenizer)
    return root, train(root)


@pytest.fixture
def fresh(tmp_path, tiny_tokenizer):  # noqa: F811
    """A finished run of the test's own, for cases that change it for good."""
    root = make_root(tmp_path, tiny_tokenizer)
    return root, train(root)


def _weights(path):
    return load_file(str(path))


def test_extending_a_finished_run_trains_on_at_the_new_schedules_learning_rate(fresh):
    """A longer max_steps used to print 'resumed' and train at lr 0: step 3's weights were bit-identical to step 2."""
    root, run_dir = fresh
    step2 = _weights(run_dir / "checkpoints/step-00000002/model.safetensors")
    assert train(root, "--max-steps", "4") == run_dir and results(run_dir)["train"]["steps"] == 4
    assert results(run_dir)["train"]["resumed_from"].endswith("step-00000002")
    step3 = _weights(run_dir / "checkpoints/step-00000003/model.safetensors")
    assert any(not torch.equal(step2[k], step3[k]) for k in step2)  # the first new step moved the weights
    state = torch.load(run_dir / "checkpoints/step-00000003/optimizer.bin", weights_only=False)
    # after step 3 the optimizer holds the lr of step 4 on the cosine schedule over the NEW total of 4 (no warm-up)
    expected = 3e-3 * 0.5 * (1 + math.cos(math.pi * 3 / 4))
    assert state["param_groups"][0]["lr"] == pytest.approx(expected, rel=1e-6) and expected > 0


def test_a_base_reinitialised_with_the_same_shapes_is_refused_by_resume_eval_and_merge(fresh,
                                                                                         tiny_tokenizer):  # noqa: F811
    root, run_dir = fresh
    adapter = (run_dir / ADAPTER).read_bytes()
    save_base(root / "base", tiny_tokenizer, seed=1)  # same folder, same shapes, other weights
    for command in (("eval", run_dir), ("merge", run_dir, "--out", root / "merged")):
        line = refused(memfit(root, *command), "is not the one run")
        assert str(root / "base") in line
    assert not (root / "merged").exists()
    resumed = memfit(root, "train", root / "tiny.yaml", "--max-steps", "3")
    assert resumed.returncode == 2 and "Traceback" not in resumed.stderr, resumed.stderr[-3000:]
    assert "model weights" in resumed.stderr.strip().splitlines()[-1]
    assert results(run_dir)["train"]["steps"] == 2 and (run_dir / ADAPTER).read_bytes() == adapter


def test_one_flipped_bit_in_the_adapter_makes_eval_refuse(finished):
    root, run_dir = finished
    weights = run_dir / ADAPTER
    clean = weights.read_bytes()
    damaged = bytearray(clean)
    damaged[-7] ^= 0x04  # inside a LoRA matrix: it would load and score another number
    weights.write_bytes(bytes(damaged))
    try:
        refused(memfit(root, "eval", run_dir), "does not match its recorded sha256")
    finally:
        weights.write_bytes(clean)
    assert memfit(root, "eval", run_dir).returncode == 0


def test_a_truncated_trainer_state_falls_back_to_the_previous_checkpoint(fresh):
    """It used to restart silently from step 0 and overwrite results.json."""
    root, run_dir = fresh
    state = run_dir / "checkpoints/step-00000002/trainer_state.json"
    state.write_text(state.read_text()[:40])
    done = memfit(root, "train", root / "tiny.yaml", "--max-steps", "3")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "step-00000002" in done.stderr and "trainer_state.json" in done.stderr  # named, not silent
    record = results(run_dir)["train"]
    assert record["resumed_from"].endswith("step-00000001") and record["steps"] == 3
    assert any("step-00000002" in str(d) for d in record["damaged_checkpoints"])


def test_merge_out_inside_the_run_is_refused(finished):
    root, run_dir = finished
    refused(memfit(root, "merge", run_dir, "--out", run_dir / "adapter" / "merged"), "inside the run directory")
    assert not (run_dir / "adapter" / "merged").exists()


def test_temp_folders_of_killed_merges_are_cleaned_by_the_next_merge(finished, tmp_path):
    root, run_dir = finished
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    leftovers = [tmp_path / f".export.{dead.pid}-0badcafe.tmp",  # atomic_directory's own name
                 tmp_path / f".export.tmp-{dead.pid}-0badcafe"]  # the name merges used before it
    for folder in leftovers:
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"half")
    alive = tmp_path / f".export.tmp-{os.getpid()}-0badcafe"  # a merge still running: left alone
    alive.mkdir()
    done = memfit(root, "merge", run_dir, "--out", tmp_path / "merged")
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["merged", alive.name])
    shutil.rmtree(alive)
