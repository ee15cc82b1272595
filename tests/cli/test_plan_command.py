"""`memfit plan`, `bench`, `estimate` and `stacks` as real subprocesses on a tiny config JSON (random weights, CPU,
simulated budget, capped search), plus every option's help and default."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest
import torch
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from test_train_command import memfit  # noqa: E402

from _models import tiny_config  # noqa: E402
from memfit.cli import main  # noqa: E402
from memfit.cli.options import EffectiveDefaults  # noqa: E402

BUDGET_GIB = "0.003"  # a few MB: a tiny model at seq 32 fits a handful of sequences
cpu_only = pytest.mark.skipif(torch.cuda.is_available(), reason="CPU planning behaviour")


@pytest.fixture
def tiny_json(tmp_path) -> str:
    path = tmp_path / "tiny.json"
    path.write_text(tiny_config().to_json_string())
    return str(path)


def _env(tmp_path) -> dict:
    return {"MEMFIT_CACHE": str(tmp_path / "cache")}


@cpu_only
def test_plan_is_one_stack_with_its_max_micro_batch_and_accumulation(tmp_path, tiny_json):
    out = tmp_path / "report"
    done = memfit("plan", "--model-config", tiny_json, "--stack", "lora+ga4", "--seq-len", "32", "--cpu-budget-gib",
                  BUDGET_GIB, "--max-micro-batch", "8", "--out", str(out), "--json", str(tmp_path / "plan.json"),
                  env=_env(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    res = json.loads((tmp_path / "plan.json").read_text())
    micro = res["max_micro_batch"]
    assert 1 <= micro <= 8 and res["grad_accum"] == 4 and res["effective_batch"] == micro * 4
    assert f"max micro-batch {micro}" in done.stdout and "x accumulation 4" in done.stdout
    assert (out / "plan.md").read_text().startswith("# memfit plan: ")  # not titled "bench"
    assert (out / "plan.png").is_file()


@cpu_only
def test_bench_compares_stacks_side_by_side(tmp_path, tiny_json):
    out = tmp_path / "report"
    done = memfit("bench", "--model-config", tiny_json, "--stack", "lora", "lora+gc", "--seq-len", "32",
                  "--cpu-budget-gib", BUDGET_GIB, "--max-micro-batch", "8", "--out", str(out), env=_env(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    table = done.stdout[done.stdout.index("stack  "):]
    assert "tok/s" in table and "lora " in table and "lora+gc" in table
    report = json.loads((out / "bench.json").read_text())
    assert [r["stack"] for r in report["results"]] == ["lora", "lora+gc"]
    assert report["meta"]["title"].startswith("memfit bench: ") and (out / "bench.png").is_file()


@cpu_only
def test_cpu_plan_without_a_budget_fails_before_any_model_is_built(tmp_path):
    # the model path does not exist: had anything been loaded, the error would name the model instead
    done = memfit("plan", "--model", str(tmp_path / "no-model"), env=_env(tmp_path))
    assert done.returncode == 2 and "--cpu-budget-gib" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert main(["bench", "--model", str(tmp_path / "no-model")]) == 2  # bench shares the check (in-process)


def test_estimate_prints_every_term_and_the_predicted_max_without_weights(tmp_path, tiny_json):
    from memfit.core.stack import Stack
    from memfit.plan.device_terms import device_estimate
    from memfit.plan.memory import GiB

    recipe = tmp_path / "recipe.yaml"  # a run config: its architecture, stack, seq_len and CPU budget are used
    recipe.write_text(yaml.safe_dump({"architecture": tiny_json, "stack": "lora+gc", "seq_len": 64,
                                      "target_effective_batch": 16, "cpu_budget_gib": 0.75}))
    done = memfit("estimate", "--config", str(recipe), "--device", "cpu", "--json", str(tmp_path / "est.json"),
                  env=_env(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    stack = Stack.coerce("lora+gc+ga:effective_batch=16")  # the recipe's stack as the run completes it
    expected = device_estimate(stack, tiny_config(), 64, stack.context("cpu")).max_micro_batch(0.75 * GiB)
    assert expected > 1
    saved = json.loads((tmp_path / "est.json").read_text())
    assert saved["predicted_max_micro_batch"] == saved["micro_batch"] == expected and saved["seq_len"] == 64
    for term in ("weights", "optimizer", "checkpointed_inputs", "recompute", "logits", "total (device)"):
        assert term in done.stdout
    assert f"predicted max micro-batch {expected}; trains at" in done.stdout
    k = -(-16 // expected)  # the fewest steps reaching 16, then the smallest micro-batch: never above the target
    assert saved["grad_accum"] == k and saved["train_micro_batch"] == -(-16 // k)
    assert f"= effective batch {saved['train_micro_batch'] * k}" in done.stdout
    assert "no weights loaded" in done.stdout and not list(tmp_path.rglob("*.safetensors"))


def test_stacks_resolves_a_stack_yaml_and_a_recipes_stack(tmp_path, capsys):
    stack_file, recipe = tmp_path / "stack.yaml", tmp_path / "recipe.yaml"
    stack_file.write_text(yaml.safe_dump({"strategies": ["lora", {"name": "ga", "effective_batch": 8}]}))
    done = memfit("stacks", str(stack_file))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resolved stack: lora+ga:effective_batch=8\n" in done.stdout and "unknown strategy" not in done.stderr
    recipe.write_text(yaml.safe_dump({"model": "smollm2-135m", "stack": "lora+gc"}))  # a run config names its stack
    assert main(["stacks", str(recipe)]) == 0
    assert "resolved stack: lora+gc\n" in capsys.readouterr().out


def test_every_capacity_option_has_help_and_shows_its_default():
    from memfit.cli.plan import add_commands

    parser = argparse.ArgumentParser(prog="memfit")
    sub = parser.add_subparsers(dest="command")
    add_commands(sub)
    for name, p in sub.choices.items():
        assert p.formatter_class is EffectiveDefaults, name
        text = " ".join(p.format_help().split())
        assert "None" not in text, name  # an unset option's help says what happens without it
        for action in p._actions:
            if not action.option_strings or action.dest == "help":
                continue
            assert action.help, f"{name} {action.option_strings[0]} has no help"
            if action.default is argparse.SUPPRESS:  # the formatter shows nothing: the help must say it
                assert "(default: " in action.help, f"{name} {action.option_strings[0]} shows no default"
        shown = [a for a in p._actions if a.option_strings and a.dest != "help" and a.default is not None]
        assert text.count("(default: ") >= len(shown)
