"""Atomic training checkpoints, exact resume, and adapters checked against their base model before loading.

A checkpoint is a folder `<output_dir>/checkpoints/step-00000012` holding accelerate's state (the *trainable* weights
as safetensors, optimizer incl. 8-bit states, LR scheduler, loss scaler, the RNG states of every library and process)
plus `trainer_state.json` (step, data position, loss history, token counts, micro-batch after any OOM back-off).
It is written into a hidden `.tmp-` folder, every file fsync'ed, then renamed into place and the parent fsync'ed, so a
folder with a final name is always complete: a kill or a full disk during saving leaves the previous checkpoint as the
one resume picks. Checkpoints are taken after optimizer steps, so resume always starts at an accumulation-window start.
A manifest of checksums is written last (memfit.core.integrity); resume verifies it, names a damaged checkpoint,
sets it aside and takes the one before it, or refuses when none is good (memfit.training.checkpoint_folders).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections import OrderedDict
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from ..core.files import atomic_write_json, fsync_dir, fsync_tree
from ..core.integrity import manifest_problem, write_manifest
from ..core.wrapping import unwrap_peft
from .checkpoint_folders import (STATE_FILE, TrainState, checkpoint_folders, checkpoint_problem, discard,
                                 list_checkpoints, read_state)

log = logging.getLogger(__name__)

BASE_FILE = "memfit_base.json"  # written next to saved adapters: the base architecture they were trained on
BASE_PREFIX = "model "  # fingerprint keys of the base model's shape, e.g. "model hidden_size"
BASE_KEYS = ("model_type", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
             "num_attention_heads", "num_key_value_heads")
# Called with the temporary folder in the middle of a save (after accelerate's files, before the state file and the
# rename). Tests pause here so that a SIGKILL lands mid-save; nothing sets it in normal runs.
on_partial_save: Optional[Callable[[Path], None]] = None


class CheckpointError(RuntimeError):
    """A checkpoint or results folder that cannot be written or used; the message says what is intact and what to do."""


def ensure_writable(path: str | Path) -> Path:
    """Fail before training, not after hours of it, when results cannot be written to `path`."""
    path = Path(path)
    probe = path / f".memfit-write-test-{os.getpid()}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as f:
            f.write(b"ok")
            f.flush()
            os.fsync(f.fileno())
        probe.unlink()
    except OSError as exc:
        raise CheckpointError(f"results directory {path} is not writable ({exc.strerror or exc}): pass an output_dir "
                              f"you can write to, or fix its permissions / free space. Checked before training, so "
                              f"nothing was lost.") from None
    return path


class Checkpointer:
    """Saves and restores one run's checkpoints under `root` through `acc` (see the module docstring)."""

    def __init__(self, acc, model, root: str | Path, keep_last: int, fingerprint: dict[str, Any]):
        self.acc, self.root, self.keep_last = acc, Path(root), keep_last
        # the base model's shape is part of the run: a model folder or config that changed under the same name would
        # otherwise resume silently (LoRA on attention only never sees a new vocab) or die on "size mismatch"
        base = base_info(acc.unwrap_model(model))
        self.fingerprint = {**fingerprint, **{f"{BASE_PREFIX}{k}": v for k, v in base.items() if v is not None}}
        # Only trainable weights go into checkpoints: the frozen (possibly 4-bit) base is reloaded from its source.
        self.trainable = {n: list(p.shape) for n, p in model.named_parameters() if p.requires_grad}
        self._hook = acc.register_save_state_pre_hook(self._keep_trainable)
        self.resumed_from: Optional[Path] = None
        self.damaged: list[str] = []  # checkpoints set aside at resume, each with its problem

    def _keep_trainable(self, models, weights, output_dir) -> None:
        weights[:] = [OrderedDict((k, v) for k, v in w.items() if k in self.trainable) for w in weights]

    def close(self) -> None:
        self._hook.remove()

    def latest(self) -> Optional[Path]:
        found = list_checkpoints(self.root)
        return found[-1] if found else None

    def save(self, state: TrainState, model: torch.nn.Module) -> Path:
        acc, final = self.acc, self.root / f"step-{state.step:08d}"
        bad = nonfinite_weights(model, self.trainable)
        if bad:
            raise CheckpointError(f"not saving checkpoint {final.name}: trainable weights {bad[:3]} hold NaN/inf, so "
                                  f"resuming from it could only continue garbage; lower the learning rate and "
                                  f"resume from the previous checkpoint ({self.latest() or 'none yet'})")
        tmp = final.with_name(f".tmp-{final.name}")
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        acc.wait_for_everyone()
        try:
            acc.save_state(str(tmp))
            acc.wait_for_everyone()  # every rank's RNG file is in before the folder is sealed
            if acc.is_main_process:
                if on_partial_save is not None:
                    on_partial_save(tmp)
                atomic_write_json(tmp / STATE_FILE, {**asdict(state), "fingerprint": self.fingerprint}, indent=None)
                write_manifest(tmp)  # last: the checksums of everything above (memfit.core.integrity)
                fsync_tree(tmp)
                if final.exists():
                    discard(final)
                os.rename(tmp, final)
                fsync_dir(self.root)
        except Exception as exc:  # noqa: BLE001 - safetensors' SafetensorError on a full disk is no OSError
            shutil.rmtree(tmp, ignore_errors=True)
            previous = self.latest()
            kept = f"the previous checkpoint {previous} is intact and resume uses it" if previous else \
                "no earlier checkpoint exists"
            reason = f"{exc.strerror or exc} (errno {exc.errno})" if isinstance(exc, OSError) else \
                f"{type(exc).__name__}: {exc}"
            raise CheckpointError(f"writing checkpoint {final.name} into {self.root} failed: {reason}; {kept}. Free "
                                  f"disk space (or lower keep_last), then rerun with the same output_dir to "
                                  f"continue.") from exc
        acc.wait_for_everyone()
        if acc.is_main_process:
            for old in list_checkpoints(self.root)[:-self.keep_last]:
                discard(old)
        return final

    def resume(self, mode: bool | str) -> Optional[TrainState]:
        """Restore the checkpoint `mode` asks for into the prepared objects; None when starting fresh. A damaged
        checkpoint (memfit.core.integrity) is named and set aside as `damaged-step-N`, and the newest good one
        is used; when there are checkpoints but none is good the run refuses, so it never restarts from step 0 over
        an earlier run's results."""
        if self.acc.is_main_process and self.root.is_dir():  # leftovers of saves or deletions that were killed
            for junk in self.root.glob(".t*-step-*"):
                shutil.rmtree(junk, ignore_errors=True)
        folders = checkpoint_folders(self.root)
        if mode is False or mode == "never":
            if folders:
                raise CheckpointError(f"{self.root} already holds checkpoints up to {folders[-1].name} of an "
                                      f"earlier run and resume is off: use resume='auto' to continue it, or another "
                                      f"output_dir to start over")
            return None
        if mode not in (True, "auto"):
            folder = Path(mode)
            if (problem := checkpoint_problem(folder)) is not None:
                raise CheckpointError(f"checkpoint {folder} is damaged: {problem}; pass an earlier checkpoint or "
                                      f"resume='auto' (the newest good one)")
        else:
            folder = self._newest_good(folders)
        if folder is None:
            if mode is True:
                raise CheckpointError(f"resume=True but {self.root} holds no complete checkpoint")
            return None
        state = read_state(folder)
        self._check_fingerprint(folder, state)
        self._check_weights(folder)
        self.acc.load_state(str(folder), strict=False)  # strict=False: the frozen base is not in the checkpoint
        self.resumed_from = folder
        log.info("resumed from %s (step %d, epoch %d, batch %d)", folder, state.step, state.epoch, state.consumed)
        return state

    def _newest_good(self, folders: list[Path]) -> Optional[Path]:
        damaged = []
        for folder in reversed(folders):
            problem = checkpoint_problem(folder)
            if problem is None:
                break
            damaged.append(f"{folder.name} ({problem})")
            log.warning("checkpoint %s is damaged: %s; set aside as damaged-%s, trying the one before it", folder,
                        problem, folder.name)
        else:
            folder = None
        self.damaged += damaged
        self.acc.wait_for_everyone()  # every rank has checked before the main one renames
        if self.acc.is_main_process:
            for bad in folders[len(folders) - len(damaged):]:
                aside = bad.with_name(f"damaged-{bad.name}")
                shutil.rmtree(aside, ignore_errors=True)
                os.rename(bad, aside)
        self.acc.wait_for_everyone()
        if folder is None and damaged:
            raise CheckpointError(f"every checkpoint in {self.root} is damaged: {'; '.join(damaged)}. Nothing was "
                                  f"overwritten; they are kept as damaged-step-*. To start over, pass another "
                                  f"output_dir (or delete {self.root})")
        return folder

    def _check_fingerprint(self, folder: Path, state: TrainState) -> None:
        theirs = state.fingerprint
        # checkpoints written before the base model's shape was recorded lack those keys: not a difference
        differ = [f"{key} ({theirs.get(key)!r} there, {want!r} here)" for key, want in self.fingerprint.items()
                  if theirs.get(key) != want and (key in theirs or not key.startswith(BASE_PREFIX))]
        if differ:
            model = any(d.startswith(BASE_PREFIX) for d in differ)
            fix = "load the base model it was trained on" if model else "rerun with the same settings and data"
            raise CheckpointError(f"checkpoint {folder} belongs to a different run{' (another base model)' * model}: "
                                  f"{'; '.join(differ)}. To continue it, {fix}; to start a new run, pass another "
                                  f"run_name/output_dir")

    def _check_weights(self, folder: Path) -> None:
        from safetensors import safe_open

        with safe_open(str(folder / "model.safetensors"), "pt") as f:
            saved = {k: list(f.get_slice(k).get_shape()) for k in f.keys()}
        if saved.keys() != self.trainable.keys():
            diff = sorted(saved.keys() ^ self.trainable.keys())[:3]
            raise CheckpointError(f"checkpoint {folder} holds different trainable weights than this model (e.g. "
                                  f"{diff}): it was written for another model or stack; use a new output_dir")
        # a shape the fingerprint does not cover (checkpoints of older versions): named here, not as "size mismatch"
        wrong = [f"{k} {saved[k]} there, {want} here" for k, want in self.trainable.items()
                 if len(want) == len(saved[k]) and want != saved[k]]  # (sharded flat parameters are not compared)
        if wrong:
            raise CheckpointError(f"checkpoint {folder} was written for a model of another shape ({wrong[0]}): load "
                                  f"its base model, or pass another run_name/output_dir to start a new run")


def nonfinite_weights(model: torch.nn.Module, names: Optional[set[str]] = None) -> list[str]:
    """Names of the (trainable, or `names`) parameters holding NaN or inf: such weights are never written to disk."""
    return [n for n, p in model.named_parameters() if (p.requires_grad if names is None else n in names)
            and p.numel() and not torch.isfinite(p.detach()).all()]


def base_info(model) -> dict[str, Any]:
    cfg = getattr(unwrap_peft(model), "config", None)
    return {k: getattr(cfg, k, None) for k in BASE_KEYS}


def load_adapter(model: torch.nn.Module, path: str | Path, *, is_trainable: bool = False):
    """A saved LoRA adapter on `model` (the base model, not yet wrapped), after checking that it was trained for this
    architecture (`check_adapter`). Checked before peft touches the model, so a wrong adapter leaves `model`
    unchanged. Safetensors only."""
    from peft import PeftModel

    check_adapter(model, path)
    return PeftModel.from_pretrained(model, str(path), is_trainable=is_trainable)


def check_adapter(model: torch.nn.Module, path: str | Path) -> None:
    """Raise CheckpointError unless the adapter at `path` fits `model`: every adapted module must exist with the
    shapes the adapter's matrices need. Reads only shapes, so `model` may live on the meta device (a check before
    loading any weights)."""
    from safetensors import safe_open

    path = Path(path)
    if not (path / "adapter_config.json").is_file():
        raise CheckpointError(f"{path} is not a LoRA adapter folder (no adapter_config.json): pass the 'adapter' "
                              f"folder a training run wrote into its output_dir")
    weights = path / "adapter_model.safetensors"
    if not weights.is_file():
        raise CheckpointError(f"{path} has no adapter_model.safetensors: only safetensors adapters are loaded "
                              f"(pickle files can run code); re-save it with save_pretrained(safe_serialization=True)")
    # one flipped bit would otherwise load and score as another adapter; adapters saved before manifests pass
    if problem := manifest_problem(path, required=False):
        raise CheckpointError(f"adapter {path} is damaged: {problem}; restore it or retrain the run")
    if hasattr(model, "peft_config"):
        raise CheckpointError("load_adapter expects the base model; this one already carries an adapter")
    ours, theirs = base_info(model), {}
    if (path / BASE_FILE).is_file():
        theirs = json.loads((path / BASE_FILE).read_text())
    wrong = {k: (theirs[k], ours[k]) for k in BASE_KEYS if theirs.get(k) is not None and theirs[k] != ours[k]}
    if wrong:
        raise CheckpointError(f"adapter {path} was trained on another base model: " + ", ".join(
            f"{k} {a} there vs {b} here" for k, (a, b) in wrong.items()) + "; load the base model it was trained on")
    modules = dict(model.named_modules())
    with safe_open(str(weights), "pt") as f:
        for key in f.keys():
            m = re.match(r"^(?:base_model\.model\.)?(.+)\.lora_(A|B)\.weight$", key)
            if m is None:
                continue
            target, shape = modules.get(m[1]), list(f.get_slice(key).get_shape())
            if target is None or not hasattr(target, "in_features"):
                raise CheckpointError(f"adapter {path} adapts {m[1]}, which this {type(model).__name__} does not "
                                      f"have: it was trained on another architecture; load its own base model")
            need, got = (target.in_features, shape[1]) if m[2] == "A" else (target.out_features, shape[0])
            if need != got:
                raise CheckpointError(f"adapter {path} does not fit this model: {key} has shape {shape} but "
                                      f"{m[1]} has {need} {'inputs' if m[2] == 'A' else 'outputs'}; it was trained on "
                                      f"another base model - load that one")
