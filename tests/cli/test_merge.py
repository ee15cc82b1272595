"""`memfit merge RUN_DIR --out DIR` as a real subprocess on a tiny finished run: plain transformers loads the result
and its logits are the adapter's; adapter_config.json names the model as the user gave it."""
from __future__ import annotations

import json

import pytest
import torch

from _tiny_run import memfit, results, run_env, shared_run
from test_train_command import tiny_tokenizer  # noqa: F401 (the session fixture)


@pytest.fixture
def run(tmp_path_factory, tiny_tokenizer):  # noqa: F811
    return shared_run(tmp_path_factory, tiny_tokenizer)


def test_merged_model_loads_with_plain_transformers_and_matches_the_adapter(run, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from memfit.recipes.saved_run import load_trained, read_run

    root, run_dir = run
    out = tmp_path / "merged"
    done = memfit("merge", str(run_dir), "--out", str(out), env=run_env(root))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == str(out) and not list(tmp_path.glob(".merged*"))  # no temporary folder left
    assert (out / "model.safetensors").is_file() and not list(out.glob("adapter_*"))

    merged = AutoModelForCausalLM.from_pretrained(out).eval()  # no peft, no memfit
    assert AutoTokenizer.from_pretrained(out).eos_token == "<eos>"
    with torch.no_grad():
        adapted = load_trained(read_run(run_dir), device=torch.device("cpu")).eval()
        ids = torch.randint(3, merged.config.vocab_size, (2, 24), generator=torch.Generator().manual_seed(0))
        want, got = adapted(input_ids=ids).logits, merged(input_ids=ids).logits
        base = adapted.get_base_model()
        with adapted.disable_adapter():
            untuned = base(input_ids=ids).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert (got - untuned).abs().max() > 1e-3  # the merge carried the training, not just the base

    again = memfit("merge", str(run_dir), "--out", str(out), env=run_env(root))  # never overwrites
    assert again.returncode == 2 and "already exists" in again.stderr and len(again.stderr.strip().splitlines()) == 1


def test_adapter_config_names_the_model_as_the_user_gave_it(run, tmp_path, monkeypatch):
    import memfit.models as models
    from memfit.models import load_model

    _, run_dir = run
    recorded = results(run_dir)
    saved = json.loads((run_dir / "adapter" / "adapter_config.json").read_text())
    assert saved["base_model_name_or_path"] == recorded["config"]["model"]["name"]  # the folder the recipe was given
    # the embedded default used to be recorded as the cache folder its weights are converted into
    monkeypatch.setattr(models, "embedded_model_dir", lambda: models.Path(recorded["config"]["model"]["name"]))
    model = load_model("smollm2-135m", "lora")
    model.save_pretrained(tmp_path / "adapter")
    written = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert written["base_model_name_or_path"] == "smollm2-135m"


def test_a_full_fine_tune_is_its_own_merged_model_and_eval_scores_it(tmp_path, tiny_tokenizer):  # noqa: F811
    """A stack without LoRA saves the whole model: `memfit eval --merge` and `memfit merge` use it as it is."""
    from transformers import AutoModelForCausalLM

    from _tiny_run import tiny_run

    run_dir = tiny_run(tmp_path, tiny_tokenizer, stack="ga:effective_batch=8")
    assert not (run_dir / "adapter" / "adapter_config.json").exists()
    done = memfit("eval", str(run_dir), "--merge", env=run_env(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["perplexity"] == pytest.approx(results(run_dir)["final_perplexity"], rel=1e-4)
    out = tmp_path / "merged"
    assert memfit("merge", str(run_dir), "--out", str(out), env=run_env(tmp_path)).returncode == 0
    merged, saved = (AutoModelForCausalLM.from_pretrained(p) for p in (out, run_dir / "adapter"))
    for (name, a), b in zip(merged.state_dict().items(), saved.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)


def test_an_out_folder_inside_the_run_is_refused_in_one_line(run, tmp_path):
    """Continuing the run (or a new run under its name) deletes what lies in its folder: the export would go too."""
    root, run_dir = run
    done = memfit("merge", str(run_dir), "--out", str(run_dir / "adapter" / "merged"), env=run_env(root))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    (line,) = done.stderr.strip().splitlines()
    assert "lies inside the run directory" in line and not (run_dir / "adapter" / "merged").exists()


def test_a_killed_merge_leaves_nothing_behind_and_exports_are_readable_and_checksummed(run, tmp_path, monkeypatch):
    import os
    import subprocess
    import sys

    from memfit.core.integrity import manifest_problem
    from memfit.recipes.merge import merge_run
    from memfit.recipes.saved_run import RunError

    root, run_dir = run
    monkeypatch.setenv("MEMFIT_CACHE", run_env(root)["MEMFIT_CACHE"])
    with pytest.raises(RunError, match="inside the run directory"):  # also through a path that only resolves there
        merge_run(run_dir, run_dir / ".." / run_dir.name / "export")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    killed = tmp_path / f".other-export.{dead.pid}-0badcafe.tmp"  # a merge into another --out, killed half-way
    killed.mkdir()
    (killed / "model.safetensors").write_bytes(b"half")
    out = merge_run(run_dir, tmp_path / "merged")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged"]
    assert manifest_problem(out) is None
    modes = {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()}
    assert modes["model.safetensors"] == 0o644 and set(modes.values()) == {0o644}, modes
    assert os.access(out / "model.safetensors", os.R_OK)


def test_a_cache_that_is_a_file_is_refused_before_loading(run, tmp_path, monkeypatch):
    import argparse

    from memfit.cli.merge import add_merge_parser

    _, run_dir = run
    (tmp_path / "cache").write_text("not a folder")
    monkeypatch.setenv("MEMFIT_CACHE", str(tmp_path / "cache"))
    parser = argparse.ArgumentParser()
    add_merge_parser(parser.add_subparsers())
    args = parser.parse_args(["merge", str(run_dir), "--out", str(tmp_path / "merged")])
    with pytest.raises(ValueError, match=f"MEMFIT_CACHE {tmp_path / 'cache'} cannot be used: it is a file"):
        args.func(args)
