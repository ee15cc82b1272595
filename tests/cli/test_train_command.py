"""`memfit train` and the CLI around it, run as real subprocesses: recipes, generated flags, one-line user errors,
run identity (a changed setting is refused, a longer run continues) and the YAML -> results.json -> rerun round trip."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from _models import REPO

sys.path.insert(0, str(Path(__file__).parents[1] / "recipes"))
from test_finetune import _one_thread, climate_pdfs, tiny_model_dir, tiny_tokenizer  # noqa: E402,F401

from memfit.cli.train import parse_config  # noqa: E402
from memfit.core.stack import Stack  # noqa: E402

RECIPES = sorted((REPO / "recipes").glob("*.yaml"))


def memfit(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "memfit", *args], capture_output=True, text=True, env=environ,
                          timeout=timeout, cwd=REPO)


def test_every_recipe_validates_and_its_stack_builds():
    assert {p.stem for p in RECIPES} >= {"smollm2-cpu", "smollm2-gpu", "llama-3.2-3b-seed",
                                         "llama-3.2-3b-throughput", "llama-3.1-8b-24gib"}
    for path in RECIPES:
        cfg = parse_config([str(path)])
        file = yaml.safe_load(path.read_text())
        if "pdf_dir" in file:  # the shorthand of one PDF source: validated into `sources`
            assert [(s.kind, s.path) for s in cfg.data.sources] == [("pdf", file.pop("pdf_dir"))]
        assert {key: cfg.flat()[key] for key in file} == file
        if cfg.stack != "auto":  # 'auto': the planner chooses on the GPU (smollm2-gpu)
            Stack.coerce(cfg.stack)  # a recipe naming an impossible stack fails here, not on the GPU


def test_flags_override_the_file_and_help_shows_the_recipes_values():
    cfg = parse_config([str(REPO / "recipes/smollm2-cpu.yaml"), "--lr", "1e-4", "--scheduler", "linear"])
    assert cfg.train.lr == 1e-4 and cfg.train.scheduler == "linear" and cfg.train.max_steps == 6  # the file's value stays
    help_text = memfit("train", "recipes/smollm2-cpu.yaml", "--help").stdout
    assert "(default: 0.003)" in help_text.replace("\n", " ").replace("  ", " ")  # the recipe's lr, not the model's
    for key in ("--weight-decay", "--checkpoint-every", "--keep-last", "--log-with", "--eval-every", "--resume",
                "--warmup", "--test-fraction", "--eval-batch-size", "--max-grad-norm"):
        assert key in help_text


@pytest.mark.parametrize("args, says", [
    (["train", "recipes/smollm2-cpu.yaml", "--lr", "abc"], "--lr: 'abc' is not a valid float"),
    (["train", "recipes/smollm2-cpu.yaml", "--lr", "-1"], "lr (--lr) = -1.0"),
    (["train", "recipes/smollm2-cpu.yaml", "--bogus", "1"], "unrecognized arguments: --bogus"),
    (["train", "missing.yaml"], "config file missing.yaml does not exist"),
    (["train", "no-such-recipe"], "smollm2-cpu"),
])
def test_user_errors_are_one_line_with_exit_code_2(args, says):
    done = memfit(*args)
    assert done.returncode == 2 and says in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_unknown_yaml_key_is_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("lrr: 0.1\n")
    done = memfit("train", str(bad))
    assert done.returncode == 2 and "unknown setting(s) 'lrr'" in done.stderr and "Traceback" not in done.stderr


def test_version_data_help_and_strategy_arguments():
    assert memfit("--version").stdout.startswith("memfit ")
    data = memfit("data")
    assert data.returncode == 0 and "usage: memfit data" in data.stdout
    lora = memfit("stacks", "lora")
    assert lora.returncode == 0 and "dropout" in lora.stdout and "float" in lora.stdout and "0.05" in lora.stdout


def _recipe(tmp_path: Path, pdfs: Path, model: Path, **extra) -> Path:
    values = dict(pdf_dir=str(pdfs), model=str(model), output_dir=str(tmp_path / "runs"), seq_len=32,
                  target_effective_batch=8, max_steps=2, lr=3e-3, eval_context=32, eval_max_tokens=64,
                  cpu_budget_gib=0.004, max_micro_batch=4, progress=False, checkpoint_every=1, log_with=None, **extra)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def test_round_trip_identity_and_continuation(tmp_path, tiny_model_dir, climate_pdfs):  # noqa: F811
    env = {"MEMFIT_CACHE": str(tmp_path / "cache")}
    recipe = _recipe(tmp_path, climate_pdfs, tiny_model_dir)
    first = memfit("train", str(recipe), env=env)
    assert first.returncode == 0, first.stderr[-2000:]
    run_dir = next((tmp_path / "runs").iterdir())
    results = json.loads((run_dir / "results.json").read_text())
    assert results["config"]["train"]["lr"] == 3e-3 and results["train"]["steps"] == 2
    assert set(results["data"]["test_sha256"]) == set(results["data"]["test_documents"])

    # the resolved config in results.json runs the same run again: it continues (nothing left to train)
    again = memfit("train", str(run_dir / "results.json"), env=env)
    assert again.returncode == 0, again.stderr[-2000:]
    rerun = json.loads((run_dir / "results.json").read_text())
    assert rerun["train"]["resumed_from"] and rerun["final_perplexity"] == pytest.approx(results["final_perplexity"])

    # a different learning rate into the same run directory is refused, naming the key; before, it resumed silently
    changed = memfit("train", str(run_dir / "results.json"), "--lr", "1e-3", env=env)
    assert changed.returncode == 2 and "lr (0.003 there, 0.001 here)" in changed.stderr
    assert "Traceback" not in changed.stderr

    # without a run name, a different configuration gets its own directory
    other = parse_config([str(recipe), "--lr", "1e-3"]).resolved("cpu").run_name
    assert other != parse_config([str(recipe)]).resolved("cpu").run_name

    # raising max_steps continues the run from its checkpoint (before: refused with a traceback)
    longer = memfit("train", str(run_dir / "results.json"), "--max-steps", "3", env=env)
    assert longer.returncode == 0, longer.stderr[-2000:]
    assert json.loads((run_dir / "results.json").read_text())["train"]["steps"] == 3
