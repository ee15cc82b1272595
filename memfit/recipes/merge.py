"""A run's adapter folded into its base model: one plain transformers checkpoint (safetensors, config, tokenizer)
that `AutoModelForCausalLM.from_pretrained(DIR)` loads with no peft and no memfit.

The adapter is merged into the *original* full-precision weights, also for runs that trained on a 4-bit/8-bit or
bf16 base: quantized weights cannot hold the merged update, and loading the original from its source is exact where
dequantizing would bake the quantization error into the exported model.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..core.files import atomic_directory, remove_stale_temporaries
from ..core.integrity import write_manifest
from ..quiet import transformers_bars_off
from .saved_run import RunError, is_full_fine_tune, load_trained, read_run, run_tokenizer

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def merged_model(run, device: torch.device | None = None) -> torch.nn.Module:
    """The run's adapter merged into the full-precision base (a plain transformers model)."""
    model = load_trained(run, as_trained=False, device=device)
    return model if is_full_fine_tune(run) else model.merge_and_unload()  # a full fine-tune has nothing to merge


def _inside(out: Path, run_dir: Path) -> bool:
    try:
        return out.resolve().is_relative_to(run_dir.resolve())
    except (OSError, RuntimeError):  # a symlink loop (RuntimeError before Python 3.13): fails later, loudly
        return False


def merge_run(run_dir: str | Path, out: str | Path, dtype: str = "fp32") -> Path:
    """Write the merged model of `run_dir` into `out`. Built in a hidden temporary sibling (core/files.py names it
    with the writer's pid, so a later merge removes it if this one is killed) and renamed into place: `out` is either
    absent or complete, holds a checksum manifest and world-readable files; an existing `out` is never overwritten."""
    out = Path(out)
    if _inside(out, Path(run_dir)):
        raise RunError(f"--out {out} lies inside the run directory {run_dir}: continuing that run (or training "
                       f"another under its name) would delete it; pass a folder outside it")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise RunError(f"--out {out} already exists: pass a new folder (a merge never overwrites one)")
    run = read_run(run_dir)
    model = merged_model(run, torch.device("cpu")).to(DTYPES[dtype])
    tokenizer = run_tokenizer(run)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out.parent)  # merges into other folders here that were killed half-way
    if out.is_dir():  # the empty folder the check above allowed
        out.rmdir()
    with atomic_directory(out, replace=False) as tmp:
        with transformers_bars_off():  # the command names what it wrote when done
            model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        for path in tmp.rglob("*"):  # safetensors writes 0600: an exported model is for others to load too
            if path.is_file():
                path.chmod(0o644)
        write_manifest(tmp)
    return out
