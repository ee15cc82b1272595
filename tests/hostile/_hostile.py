"""What every hostile test starts from: a tiny random Llama saved like a Hub checkpoint with a tiny tokenizer, a
folder of English notes, a recipe over them, and `python -m memfit` run as a user runs it (its own MEMFIT_CACHE)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from _models import REPO, tiny_config

sys.path[:0] = [str(REPO / "tests" / "data"), str(REPO / "tests" / "recipes")]
from pdf_factory import english_page  # noqa: E402
from test_finetune import tiny_tokenizer  # noqa: E402,F401 (the data tests' session fixture, re-exported)


def memfit(root: Path, *args, timeout: int = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MEMFIT_CACHE": str(root / "cache"),
               **(env or {})}
    return subprocess.run([sys.executable, "-m", "memfit", *map(str, args)], capture_output=True, text=True,
                          env=environ, timeout=timeout, cwd=root)


def refused(done: subprocess.CompletedProcess, says: str) -> str:
    """The one line a refusal prints (exit 2, no traceback), checked to name the problem."""
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert says in lines[-1], done.stderr[-3000:]
    return lines[-1]


def notes(folder: Path, n: int = 5, start: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + n):
        (folder / f"note{i}.txt").write_text(english_page(i, lines=6))
    return folder


def save_base(folder: Path, tokenizer, seed: int = 0) -> Path:
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    LlamaForCausalLM(tiny_config(vocab_size=len(tokenizer))).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def recipe(root: Path, **settings) -> Path:
    values = dict(model=str(root / "base"), sources=[{"kind": "text", "path": str(root / "notes")}],
                  output_dir=str(root / "runs"), seq_len=32, micro_batch=2, target_effective_batch=2, max_steps=2,
                  lr=3e-3, eval_context=32, eval_max_tokens=64, progress=False, checkpoint_every=1, log_with=None)
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump({**values, **settings}))
    return path


def make_root(root: Path, tokenizer) -> Path:
    save_base(root / "base", tokenizer)
    notes(root / "notes")
    return root


def train(root: Path, *flags) -> Path:
    done = memfit(root, "train", recipe(root), *flags)
    assert done.returncode == 0, done.stderr[-3000:]
    return next((root / "runs").iterdir())


def results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())
