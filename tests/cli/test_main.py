"""The `memfit` dispatcher: light --help/--version, and the CLI boundary's one-line errors (memfit/cli/errors.py):
the user's errors are one line with exit 2, Ctrl-C is one line with exit 130, bugs keep their traceback."""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import memfit.cli as cli
from memfit.cli import main
from memfit.cli.errors import MEMFIT_ROOT
from test_train_command import tiny_tokenizer  # noqa: F401 (the session fixture)

REPO = Path(__file__).resolve().parents[2]


def run_raising(monkeypatch, capsys, make_error, *flags: str) -> tuple[int, str]:
    def command(_name, _argv):
        raise make_error()

    monkeypatch.setattr(cli, "run_command", command)
    code = main([*flags, "stacks"])
    return code, capsys.readouterr().err


def _truncated_safetensors(tmp_path: Path):
    from safetensors import safe_open

    path = tmp_path / "adapter_model.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\"")
    return lambda: safe_open(str(path), "pt").keys()


def _raised_in_memfit(message: str):
    code = compile(f"raise RuntimeError({message!r})", os.path.join(MEMFIT_ROOT, "numeric_check.py"), "exec")
    return lambda: exec(code)


def _call(fn):  # an error constructed by running code that raises it (so its traceback is the real one)
    def make():
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001
            return exc
        raise AssertionError("expected an error")
    return make


@pytest.mark.parametrize("make_error, expected", [
    (lambda: PermissionError(errno.EACCES, "Permission denied", "/runs/x/results.json"),
     "memfit: permission denied (/runs/x/results.json): check its permissions or choose another path"),
    (lambda: IsADirectoryError(errno.EISDIR, "Is a directory", "notes.txt"),
     "memfit: is a directory (notes.txt): a folder stands where a file belongs: pass a file"),
    (lambda: OSError(errno.ENOSPC, "No space left on device", "/cache/x"), "memfit: no space left on device (/cache/x)"),
    (lambda: FileNotFoundError("no PDFs in data/: pass --pdf-dir"), "memfit: no PDFs in data/: pass --pdf-dir"),
    (_call(lambda: json.loads('{"step": 3')), "memfit: invalid JSON at line 1 column 11"),
    (lambda: OverflowError("cannot convert float infinity to integer"), "memfit: a number out of range (cannot"),
    (lambda: MemoryError(), "memfit: out of memory (MemoryError)"),
    (_call(_raised_in_memfit("not even one sequence fits: use a shorter seq_len")),
     "memfit: not even one sequence fits: use a shorter seq_len"),
    (lambda: ValueError("first line\n  second line"), "memfit: first line; second line"),
])
def test_the_users_errors_are_one_line_with_exit_2(monkeypatch, capsys, make_error, expected):
    code, err = run_raising(monkeypatch, capsys, make_error)
    assert code == 2
    assert err.startswith(expected) and err.count("\n") == 1 and "Traceback" not in err


def test_library_errors_of_files_are_one_line(monkeypatch, capsys, tmp_path):
    import yaml
    from datasets.exceptions import DatasetGenerationError

    for make, fragment in [(_call(_truncated_safetensors(tmp_path)), "truncated or corrupt weights file"),
                           (_call(lambda: yaml.safe_load("a: [1, 2")), "a YAML file memfit could not parse"),
                           (lambda: DatasetGenerationError("bad row"), "could not be read as a dataset")]:
        code, err = run_raising(monkeypatch, capsys, make)
        assert code == 2 and err.startswith("memfit: ") and fragment in err and err.count("\n") == 1


def test_memfit_error_types_and_their_exit_code(monkeypatch, capsys):
    from memfit.core.errors import MemfitError
    from memfit.training.loop import NumericError

    code, err = run_raising(monkeypatch, capsys, lambda: NumericError("loss is nan at step 3: lower lr"))
    assert (code, err) == (2, "memfit: loss is nan at step 3: lower lr\n")

    class Stopped(MemfitError):
        exit_code = 130

    code, err = run_raising(monkeypatch, capsys, lambda: Stopped("stopped at step 4: run the same command to resume"))
    assert (code, err) == (130, "memfit: stopped at step 4: run the same command to resume\n")


def test_keyboard_interrupt_is_one_line_exit_130(monkeypatch, capsys):
    assert run_raising(monkeypatch, capsys, KeyboardInterrupt) == (130, "memfit: interrupted\n")


def test_verbose_adds_the_traceback(monkeypatch, capsys):
    code, err = run_raising(monkeypatch, capsys, lambda: PermissionError(errno.EACCES, "Permission denied", "/x"),
                            "-v")
    assert code == 2 and "Traceback" in err and err.endswith("memfit: permission denied (/x): check its permissions "
                                                             "or choose another path\n")


@pytest.mark.parametrize("bug", [
    _call(lambda: [][1]), _call(lambda: None.size), _call(lambda: {}["lr"]),
    _call(lambda: __import__("torch").zeros(2, 3) @ __import__("torch").zeros(2, 3)),  # RuntimeError inside torch
    _call(lambda: __import__("torch").nn.functional.cross_entropy(__import__("torch").zeros(2, 3),
                                                                  __import__("torch").zeros(4).long())),
])
def test_bugs_keep_their_traceback(monkeypatch, capsys, bug):
    with pytest.raises(type(bug())):
        run_raising(monkeypatch, capsys, bug)


def test_a_real_command_error_is_one_line(capsys):
    assert main(["stacks", "no_such_strategy+lora"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("memfit: ") and "no_such_strategy" in err and err.count("\n") == 1


HELPS = [["--help"], ["--version"], ["train", "--help"], ["train", "smollm2-cpu", "--help"], ["data"],
         ["data", "--help"], ["data", "inspect", "--help"], ["data", "fetch", "--help"],
         *([name, "--help"] for name in cli.COMMANDS if name not in ("train", "data"))]


def test_every_help_and_version_imports_nothing_heavy_and_shows_no_unset_default():
    """Every command's --help (and --version) in one process: torch, transformers, datasets and peft stay unimported
    (seconds of startup), and no option reads "None" or PydanticUndefined: a help states the value a run uses, or
    what the option does when it is not given."""
    probe = ("import contextlib, io, json, sys\nfrom memfit.cli import main\nshown = {}\n"
             f"for argv in {HELPS!r}:\n"
             "    out = io.StringIO()\n"
             "    with contextlib.redirect_stdout(out):\n"
             "        try:\n            code = main(argv)\n        except SystemExit as e:\n            code = e.code\n"
             "    assert code in (0, None), (argv, code)\n"
             "    shown[' '.join(argv)] = out.getvalue()\n"
             "heavy = sorted(m for m in ('torch', 'transformers', 'datasets', 'peft') if m in sys.modules)\n"
             "print(json.dumps({'heavy': heavy, 'shown': shown}))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert out.returncode == 0, out.stderr
    said = json.loads(out.stdout.splitlines()[-1])
    assert said["heavy"] == []
    assert said["shown"]["--version"].startswith("memfit 0.")
    assert "inspect" in said["shown"]["data"] and "fetch" in said["shown"]["data"]
    for argv, text in said["shown"].items():
        assert text.strip(), argv
        assert "None" not in text and "PydanticUndefined" not in text, (argv, [l for l in text.splitlines()
                                                                           if "None" in l or "Undefined" in l])


def test_every_command_is_listed_and_an_unknown_one_refused(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0
    listing = capsys.readouterr().out
    assert all(f"  {name} " in listing for name in cli.COMMANDS)
    with pytest.raises(SystemExit) as stop:
        main(["trian"])
    assert stop.value.code == 2 and "invalid choice: 'trian'" in capsys.readouterr().err



def test_a_failed_run_leaves_no_empty_run_folder(tmp_path, capsys, tiny_tokenizer):  # noqa: F811
    from transformers import LlamaForCausalLM

    from _models import tiny_config
    from test_train_command import _recipe

    model_dir = tmp_path / "tiny-llama"
    LlamaForCausalLM(tiny_config(vocab_size=len(tiny_tokenizer))).save_pretrained(model_dir)
    tiny_tokenizer.save_pretrained(model_dir)
    empty = tmp_path / "no-pdfs"  # exists, holds nothing: found out after the run folder is made
    empty.mkdir()
    assert main(["train", str(_recipe(tmp_path, empty, model_dir))]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("memfit: ") and "no-pdfs" in last
    assert list((tmp_path / "runs").glob("*")) == []
