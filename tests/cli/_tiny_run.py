"""One tiny finished run for the `memfit eval` / `memfit merge` subprocess tests: a random Llama saved like a Hub
checkpoint, two generated PDFs, two training steps through `python -m memfit train`."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from _models import tiny_config

sys.path.insert(0, str(Path(__file__).parents[1] / "data"))
from pdf_factory import english_page, write_text_pdf  # noqa: E402
from test_train_command import _recipe, memfit  # noqa: E402


def write_pdf(folder: Path, name: str, seed: int) -> Path:
    return write_text_pdf(folder / name, [english_page(seed=seed + page) for page in range(4)])


def tiny_run(root: Path, tokenizer, **settings) -> Path:
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    model_dir = root / "tiny-llama"
    LlamaForCausalLM(tiny_config(vocab_size=len(tokenizer))).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    pdfs = root / "pdfs"
    pdfs.mkdir()
    for i, name in enumerate(("ocean.pdf", "land.pdf")):
        write_pdf(pdfs, name, 10 * i)
    done = memfit("train", str(_recipe(root, pdfs, model_dir, **settings)), env=run_env(root))
    assert done.returncode == 0, done.stderr[-2000:]
    return next((root / "runs").iterdir())


_RUNS: dict[str, tuple[Path, Path]] = {}


def shared_run(tmp_path_factory, tokenizer) -> tuple[Path, Path]:
    """(root, run directory) of one tiny run per test session: each subprocess costs tens of seconds on a shared
    runner, so the eval and merge tests train once. Tests that change its files put them back."""
    if "run" not in _RUNS:
        root = tmp_path_factory.mktemp("tiny-run")
        _RUNS["run"] = root, tiny_run(root, tokenizer)
    return _RUNS["run"]


def run_env(root: Path) -> dict[str, str]:
    return {"MEMFIT_CACHE": str(root / "cache")}  # the run's PDF text cache: later commands skip pypdf


def results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())
