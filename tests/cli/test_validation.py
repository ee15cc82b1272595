"""Every numeric flag of every command is refused at parse time - one line, exit 2, no traceback, before any model
or data is loaded - and run configs cannot say something else than they read (duplicate keys, alias bombs).
In-process `main([...])` calls: a refusal here must not need the seconds a model load takes."""
from __future__ import annotations

import pytest

from memfit.cli import main
from memfit.cli.options import load_yaml
from memfit.cli.train import parse_config
from memfit.core.errors import ConfigError

# nothing below may get as far as loading: a model that does not exist would be the first thing to fail
NO_MODEL = ["--model", "/nonexistent/model-folder"]


def _refused(argv: list[str], capsys) -> str:
    """The one line `memfit ARGV` answers with: exit 2, no traceback."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own refusal
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and err.strip()
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize("flag, value, says", [
    ("--warmup", "inf", "warmup"), ("--epochs", "inf", "epochs"), ("--lr", "1e308", "less than or equal to 1"),
    ("--cpu-budget-gib", "1e-9", "cpu_budget_gib"), ("--cpu-budget-gib", "-1", "cpu_budget_gib"),
    ("--cpu-budget-gib", "inf", "cpu_budget_gib"), ("--seed", "-1", "seed"), ("--seed", str(2**40), "seed"),
    ("--target-effective-batch", "-1", "target_effective_batch"), ("--margin", "5", "margin"),
    ("--margin", "nan", "margin"), ("--eval-batch-size", "0", "eval_batch_size"),
    ("--max-steps", str(10**30), "largest count"), ("--max-grad-norm", "inf", "not a finite number"),
])
def test_train_refuses_bad_numbers_at_parse_time(flag, value, says, capsys):
    line = _refused(["train", *NO_MODEL, flag, value], capsys)
    assert says in line and line.startswith("memfit:")


@pytest.mark.parametrize("command, flag, value", [
    ("plan", "--target-effective-batch", "-1"), ("plan", "--margin", "5"), ("plan", "--margin", "nan"),
    ("plan", "--eval-batch-size", "0"), ("plan", "--probe-budget", "-1"), ("plan", "--cpu-budget-gib", "1e-9"),
    ("plan", "--cpu-budget-gib", "inf"), ("plan", "--seq-len", "4"), ("plan", "--max-micro-batch", str(2**40)),
    ("bench", "--seq-len", "0"), ("bench", "--margin", "-0.1"), ("estimate", "--budget-gib", "inf"),
    ("estimate", "--micro-batch", "0"), ("estimate", "--num-processes", "0"), ("estimate", "--margin", "1"),
    ("eval", "--context", "1"), ("eval", "--context", "0"), ("eval", "--max-tokens", "-1"), ("eval", "--batch-size", "0"),
])
def test_capacity_and_eval_commands_refuse_bad_numbers_at_parse_time(command, flag, value, capsys):
    line = _refused([command, *(["--model", "/nonexistent"] if command != "eval" else ["run"]), flag, value], capsys)
    assert flag in line


def test_a_key_given_twice_is_refused(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("lr: 1e-3\nmax_steps: 2\nlr: 1e-4\n")
    with pytest.raises(ConfigError, match=r"key 'lr' is given twice"):
        load_yaml(path)


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path):
    lines = ['a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f'{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]'
              for i in range(20)]  # 9 * 4**20 strings if expanded
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=r"alias \*a is not allowed"):
        load_yaml(path)
    with pytest.raises(SystemExit, match="2"):  # a flag value is YAML too: not a valid list
        parse_config(["--sources", "[&s {kind: text, path: x}, *s]"])


def test_a_plain_recipe_still_loads(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("lr: 1.0e-3\nsources:\n  - {kind: text, path: notes}\n")
    assert load_yaml(path) == {"lr": 1e-3, "sources": [{"kind": "text", "path": "notes"}]}


def test_merge_into_the_run_folder_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    line = _refused(["merge", str(run), "--out", str(run / "adapter" / "merged")], capsys)
    assert "lies inside the run directory" in line
