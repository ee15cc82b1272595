"""memfit.quiet: the third-party messages that are not the user's to fix are dropped inside `quiet_third_party()`,
shown with verbose=True, and everything is as before once the block exits; datasets' and transformers' progress bars
are off around memfit's own calls inside the block and as before after; a real run prints only memfit's lines."""
from __future__ import annotations

import importlib
import json
import logging
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml

from memfit.quiet import LOGGER_FLOORS, datasets_bars_off, quiet_third_party, transformers_bars_off

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "recipes"))
sys.path.insert(0, str(REPO / "tests" / "cli"))
from test_finetune import climate_pdfs, tiny_model_dir, tiny_tokenizer  # noqa: E402,F401
from test_train_command import _recipe  # noqa: E402


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def _emit_the_noise() -> None:
    logging.getLogger("accelerate.accelerator").info("Saving current state to run/checkpoint-2")
    logging.getLogger("bitsandbytes.backends.cpu.ops").warning("Failed to load CPU gemm_4bit_forward")
    logging.getLogger("DeepSpeed").warning("Setting accelerator to CPU.")
    logging.getLogger("liger_kernel.backends.registry").warning("Backend impl '_cutedsl.rope' could not be imported")
    logging.getLogger("kernels._internals.hf_hub").warning("Skipping publisher trust check (offline mode)")
    logging.getLogger("DeepSpeed").error("a DeepSpeed error the user must see")
    warnings.warn("`is_gradient_checkpointing` is deprecated and will be removed in v6.", FutureWarning)
    warnings.warn("a warning about the user's own settings", UserWarning)


def _heard(verbose: bool) -> list[str]:
    records = Records()
    root = logging.getLogger()
    root.addHandler(records)
    levels = {name: logging.getLogger(name).level for name in LOGGER_FLOORS}
    logging.getLogger("DeepSpeed").propagate = True
    # other tests of the same process may have raised accelerate's own logger or disabled it (its loggers are
    # process-wide): this test is about memfit's filter, so the loggers start open
    parent = logging.getLogger("accelerate")
    parent_state = parent.level, parent.disabled, logging.getLogger("accelerate.accelerator").disabled
    parent.setLevel(logging.NOTSET)
    parent.disabled = logging.getLogger("accelerate.accelerator").disabled = False
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with quiet_third_party(verbose=verbose):
                logging.getLogger("accelerate.accelerator").setLevel(logging.NOTSET)
                root_level, root.level = root.level, logging.INFO
                try:
                    _emit_the_noise()
                finally:
                    root.level = root_level
    finally:
        root.removeHandler(records)
        parent.level, parent.disabled, logging.getLogger("accelerate.accelerator").disabled = parent_state
    assert {name: logging.getLogger(name).level for name in LOGGER_FLOORS} == levels  # restored
    assert not any(f for name in LOGGER_FLOORS for f in logging.getLogger(name).filters)
    return records.messages + [str(w.message) for w in caught]


def test_quiet_drops_only_the_listed_noise_and_verbose_keeps_it():
    quiet = _heard(verbose=False)
    assert quiet == ["a DeepSpeed error the user must see", "a warning about the user's own settings"]
    assert len(_heard(verbose=True)) == 8


@pytest.mark.parametrize("offline", ["0", "1"])  # offline: the kernels package has a message of its own
def test_the_real_import_time_messages_are_silenced_at_their_source(offline):
    probe = ("from memfit.quiet import quiet_third_party\n"
             "with quiet_third_party():\n"
             "    import deepspeed.accelerator, peft, bitsandbytes\n"
             "    deepspeed.accelerator.get_accelerator()\n"
             "print('imported')\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": offline})
    assert done.returncode == 0, done.stderr[-2000:]
    said = done.stdout + done.stderr
    assert "imported" in said and "Setting accelerator" not in said and "gemm_4bit_forward" not in said
    assert "publisher trust check" not in said


def _bar_states() -> tuple[bool, bool, dict]:
    import datasets
    from transformers.utils import logging as transformers_logging

    hub = importlib.import_module("huggingface_hub.utils.tqdm")
    return datasets.is_progress_bar_enabled(), transformers_logging.is_progress_bar_enabled(), \
        dict(hub.progress_bar_states)


@pytest.mark.parametrize("bars_before", [True, False])
def test_the_bar_switches_act_only_inside_a_quiet_block_and_put_back_what_was(bars_before):
    import datasets
    from transformers.utils import logging as transformers_logging

    hub = importlib.import_module("huggingface_hub.utils.tqdm")
    saved = _bar_states()
    try:
        for switch in ((datasets.enable_progress_bars, transformers_logging.enable_progress_bar) if bars_before
                       else (datasets.disable_progress_bars, transformers_logging.disable_progress_bar)):
            switch()
        hub.progress_bar_states.clear()
        hub.progress_bar_states.update({"_global": True, "someone.else": False})  # the user's own hub settings
        before = _bar_states()
        with datasets_bars_off(), transformers_bars_off():  # outside a quiet block: a library user's bars stay
            assert _bar_states() == before
        with quiet_third_party(verbose=True), datasets_bars_off(), transformers_bars_off():  # -v
            assert _bar_states() == before
        with quiet_third_party():
            with datasets_bars_off(), transformers_bars_off():
                inside = _bar_states()
                assert inside[:2] == (False, False)
                assert inside[2] == before[2]  # the hub's download bars keep their setting
            assert _bar_states() == before
        assert _bar_states() == before
    finally:
        datasets.enable_progress_bars() if saved[0] else datasets.disable_progress_bars()
        transformers_logging.enable_progress_bar() if saved[1] else transformers_logging.disable_progress_bar()
        hub.progress_bar_states.clear()
        hub.progress_bar_states.update(saved[2])


# Logging goes to a recording handler (so every line is known by its logger); what is left on stderr is bars,
# warnings and prints. Allowed: memfit's loggers, memfit's own bars (train, perplexity), and the summary on stdout.
_RECORDING_MAIN = """import json, logging, sys
records = []
class Keep(logging.Handler):
    def emit(self, record):
        records.append([record.name, record.getMessage()])
logging.basicConfig(level=logging.INFO, handlers=[Keep()])
from memfit.cli import main
try:
    code = main(sys.argv[2:])
finally:
    open(sys.argv[1], "w").write(json.dumps(records))
sys.exit(code)
"""
MEMFIT_BARS = ("train", "perplexity")


def recorded_memfit(python: str, records: Path, argv: list[str], cwd: Path, env: dict[str, str],
                    timeout: int = 600) -> tuple[list[list[str]], list[str], str]:
    """(every logged [logger, message], the other stderr lines, stdout) of `python -m memfit ARGV` (also used by
    tests/test_wheel.py on the installed wheel)."""
    done = subprocess.run([python, "-c", _RECORDING_MAIN, str(records), *argv], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, env={**env, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line.strip() for line in done.stderr.replace("\r", "\n").splitlines() if line.strip()]
    return json.loads(records.read_text()), lines, done.stdout


def third_party_output(logged: list[list[str]], stderr: list[str]) -> list[str]:
    """What a run said that is not memfit's: other loggers' records, stderr lines that are not memfit's bars."""
    return [f"{name}: {message}" for name, message in logged if not name.startswith("memfit")] + \
        [line for line in stderr if line.split(":")[0] not in MEMFIT_BARS]


def _tiny_run_output(tmp_path: Path, recipe: Path, *flags: str) -> tuple[list[list[str]], list[str], str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "MEMFIT_CACHE": str(tmp_path / "cache")}
    return recorded_memfit(sys.executable, tmp_path / f"records{len(flags)}.json", [*flags, "train", str(recipe)],
                           REPO, env)


def test_a_training_run_prints_only_memfit_lines_and_bars_and_verbose_shows_the_rest(tmp_path, tiny_model_dir,
                                                                                      climate_pdfs):
    recipe = _recipe(tmp_path, climate_pdfs, tiny_model_dir)
    recipe.write_text(yaml.safe_dump({**yaml.safe_load(recipe.read_text()), "progress": True, "max_steps": 1}))
    logged, stderr, stdout = _tiny_run_output(tmp_path, recipe)
    assert third_party_output(logged, stderr) == []
    assert {line.split(":")[0] for line in stderr} == set(MEMFIT_BARS)  # memfit's own bars are shown
    run_dir = next((tmp_path / "runs").iterdir())
    assert stdout.strip() == (run_dir / "summary.md").read_text().strip()

    shutil.rmtree(tmp_path / "runs")
    _, loud, _ = _tiny_run_output(tmp_path, recipe, "-v")  # -v: the third-party bars are back
    assert any(line.startswith("Loading weights") for line in loud) and any(line.startswith("Map") for line in loud)
