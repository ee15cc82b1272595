"""Issue 30's loud cases (a traceback, an unclear line or a hang, once), as benchmarks/hostile_cases.py plays them."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from hostile_lab import Outcome, case, truncate
from hostile_silent import _converted, _skipped, resume_past_damaged_checkpoint


@case("loud")
def sigint_during_training(lab):
    """Ctrl-C in the middle of a long run: the step finishes, a checkpoint is saved, one line says how to resume."""
    recipe = lab.recipe(max_steps=100000, checkpoint_every=50)
    command = [sys.executable, "-m", "memfit", "train", str(recipe)]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=lab.env(),
                            cwd=lab.root, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and not list(lab.root.glob("runs/*/checkpoints/step-*")) and proc.poll() is None:
        time.sleep(0.5)  # past the first checkpoint: the run is training
    proc.send_signal(signal.SIGINT)
    try:
        _, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, stderr = proc.communicate()
        return Outcome(["memfit", "train", "./recipe.yaml", "(SIGINT)"], 124, stderr, "interrupt")
    last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
    return Outcome(["memfit", "train", "./recipe.yaml", "(SIGINT after the first checkpoint)"], proc.returncode,
                   stderr, "interrupt", correct="run the same command again" in last, note=last[:200])


@case("loud")
def truncated_checkpoint(lab):
    return resume_past_damaged_checkpoint(lab, "model.safetensors")


@case("loud")
def truncated_adapter(lab):
    run = lab.train()
    truncate(run / "adapter/adapter_model.safetensors")
    return lab.run("eval", run, expect="refuse")


@case("loud")
def truncated_plan_cache(lab):
    def plan(name):
        return ["plan", "--model", lab.root / "base", "--seq-len", "32", "--max-micro-batch", "2",
                "--cpu-budget-gib", "0.5", "--json", lab.root / f"{name}.json"]

    def same_plan(out):
        first, again = (json.loads((lab.root / f"{name}.json").read_text()) for name in ("first", "again"))
        return "plan cache" in out.stderr and first["max_micro_batch"] == again["max_micro_batch"] >= 1

    first = lab.run(*plan("first"), expect="succeed")
    if first.returncode != 0:
        return first
    for entry in (lab.root / "cache/plans").glob("*.json"):
        truncate(entry, 0.3)
    return lab.run(*plan("again"), expect="succeed", check=same_plan)


@case("loud")
def truncated_arrow_file(lab):
    lab.train(arrow_cache=True, output_dir=str(lab.root / "a"))
    for path in (lab.root / "cache/arrow").rglob("tokens-*.arrow"):
        truncate(path)
    return lab.run("train", lab.recipe(arrow_cache=True, output_dir=str(lab.root / "b")), expect="succeed",
                   check=lambda _: lab.results(lab.root / "b")["train"]["losses"] ==
                   lab.results(lab.root / "a")["train"]["losses"])


@case("loud")
def truncated_converted_model(lab):
    return _converted(lab, truncate)


def _odd_file(lab, name, make):
    make(lab.root / "notes" / name)
    return lab.run("train", lab.recipe(), expect="succeed", timeout=180, check=lambda _: _skipped(lab, name))


@case("loud")
def symlink_loop(lab):
    return _odd_file(lab, "loop.txt", lambda p: p.symlink_to(p))


@case("loud")
def fifo_named_txt(lab):
    return _odd_file(lab, "pipe.txt", os.mkfifo)


@case("loud")
def directory_named_notes_txt(lab):
    return _odd_file(lab, "notes.txt", lambda p: p.mkdir())


@case("loud")
def train_numbers_out_of_range(lab):
    return [lab.run("train", lab.recipe(), flag, value, expect="refuse", timeout=120,
                    check=lambda _: not (lab.root / "runs").exists())
            for flag, value in [("--warmup", "inf"), ("--epochs", "inf"), ("--lr", "1e308"),
                                ("--cpu-budget-gib", "1e-9"), ("--cpu-budget-gib", "-1"), ("--cpu-budget-gib", "inf"),
                                ("--seed", "-1")]]


@case("loud")
def plan_cache_dev_null(lab):
    return lab.run("train", lab.recipe(), "--plan-cache", "/dev/null", expect="refuse",
                   check=lambda _: not (lab.root / "runs").exists())


@case("loud")
def read_only_cache(lab):
    cache = lab.root / "cache"
    cache.mkdir()
    cache.chmod(0o555)
    note = "running as root: the mode is not enforced" if os.geteuid() == 0 else ""
    try:
        return lab.run("train", lab.recipe(arrow_cache=True), expect="succeed", note=note)
    finally:
        cache.chmod(0o755)


@case("loud")
def memfit_cache_is_a_file(lab):
    (lab.root / "cache-file").write_text("not a folder")
    return lab.run("train", lab.recipe(), expect="refuse", env=lab.env(MEMFIT_CACHE=str(lab.root / "cache-file")),
                   check=lambda _: not (lab.root / "runs").exists())


@case("loud")
def output_folder_inside_data(lab):
    return lab.run("train", lab.recipe(output_dir=str(lab.root / "notes/runs")), expect="refuse")


@case("loud")
def yaml_alias_bomb(lab):
    lines = ['a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f'{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]'
              for i in range(20)]  # 9 * 4**20 strings if expanded
    (lab.root / "bomb.yaml").write_text("\n".join(lines) + "\n")
    return lab.run("train", lab.root / "bomb.yaml", expect="refuse", timeout=60)
