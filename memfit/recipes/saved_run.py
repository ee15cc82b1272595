"""A finished fine-tune run read back from its directory: the resolved config and stack results.json recorded, its
test documents re-extracted from the recorded sources and checked against the recorded sha256 of each, and its base
model loaded the way `memfit eval` / `memfit merge` need it, with the adapter through the checked loader.

Why re-extract and check rather than re-split: splitting the folder again puts a training document into the "test"
set as soon as a file is added or removed; the recorded names and hashes make the held-out set exactly the run's,
or the command refuses.

Integrity (memfit.core.integrity): results.json's own checksum, the base weights' content fingerprint the run
recorded (`base_fingerprint`: re-initialised weights under the same folder name are refused, not silently scored or
merged into) and the adapter folder's checksum manifest (checked in memfit.training.checkpoint.check_adapter) are
verified before anything is scored or written. Runs written before a check existed lack its record and skip it.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from pydantic import ValidationError

from ..core.integrity import FINGERPRINT_MEMO, IntegrityError, checksum_problem, folder_fingerprint, verify_manifest
from ..core.stack import Stack
from ..data import tokenize
from ..models import CONFIG_DIR, EMBEDDED, GGUF_FILE, _gguf_folder, cache_root, load_config, load_model
from ..training.checkpoint import check_adapter, load_adapter
from .preflight import job_tokenizer
from .run_config import FinetuneConfig

BASE_FINGERPRINT = "base_fingerprint"  # results.json key holding base_fingerprint(config.model) at training time


class RunError(ValueError):
    """A run directory that cannot be evaluated or merged as asked; the message names the problem and the fix."""


@dataclass(frozen=True)
class SavedRun:
    path: Path
    results: dict[str, Any]
    config: FinetuneConfig
    stack: str  # the stack the run trained with (after `auto` chose one)

    @property
    def adapter_dir(self) -> Path:
        # the folder beside results.json first: a run directory that was moved or copied still finds its own adapter
        here = self.path / "adapter"
        return here if here.is_dir() else Path(self.results.get("adapter_dir") or here)

    @property
    def test_sha256(self) -> dict[str, str]:
        return dict(self.results["data"]["test_sha256"])


def read_run(run_dir: str | Path) -> SavedRun:
    path = Path(run_dir)
    file = path / "results.json"
    if not file.is_file():
        raise RunError(f"{path} is not a memfit run directory (no results.json): pass the folder `memfit train` "
                       f"wrote, <output_dir>/<run_name>")
    try:
        results = json.loads(file.read_text())
        config = FinetuneConfig.model_validate(results["config"])
        recorded = results["data"]["test_sha256"]
    except (ValueError, KeyError, TypeError, ValidationError) as exc:
        detail = str(exc).splitlines()[0]
        raise RunError(f"{file} does not hold a complete run record ({type(exc).__name__}: {detail}): it was "
                       f"written by an older memfit or by hand; train the run again with `memfit train`") from None
    if problem := checksum_problem(results, required=False):  # runs before results carried a checksum pass
        raise RunError(f"{file} is not the record the run wrote: {problem}. Restore it (or train the run again); its "
                       f"settings and test-document hashes decide what eval and merge do")
    if not isinstance(recorded, dict) or not recorded:
        raise RunError(f"{file} records no test documents with content hashes: train the run again with this memfit")
    if config.model.random:
        raise RunError(f"run {path} trained randomly initialised weights (a capacity/throughput run): its base "
                       f"weights were never saved, so there is nothing to evaluate or merge")
    return SavedRun(path, results, config, results.get("stack") or config.stack)


def _recorded_texts(run: SavedRun) -> dict[str, tuple[str, Any]]:
    """{name: (text as hashed, record)} of every document the run's sources give today. A run of a version before
    `pdf_dir` became a PDF source recorded its documents by file name alone (its results' data held `pdf_dir`)."""
    from ..data import load_records

    records, _ = load_records(run.config.data.sources, run.config.data.text_cache)
    by_file_name = "pdf_dir" in run.results["data"]
    return {(r.file if by_file_name else r.name): (r.content(), r) for r in records}


def test_documents(run: SavedRun, tokenizer) -> list[dict[str, Any]]:
    """The run's test documents as {name, input_ids, n_bytes} rows, sorted by name as the run scored them; refuses
    with one line when a document is gone or its text changed."""
    found = _recorded_texts(run)
    data = run.config.data
    where = ", ".join(s.label for s in data.sources)
    rows = []
    for name, want in sorted(run.test_sha256.items()):
        if name not in found:
            raise RunError(f"test document {name!r} of run {run.path} is missing from {where}: restore it (the run's "
                           f"held-out set cannot be rebuilt without it)")
        text, record = found[name]
        have = hashlib.sha256(text.encode("utf-8")).hexdigest()
        if have != want:
            raise RunError(f"test document {name!r} changed since run {run.path} (sha256 {want[:12]}... recorded, "
                           f"{have[:12]}... now): restore the original file, or train a new run on the new data")
        if record.messages is not None:
            from ..data.chat import tokenize_chat

            ids, labels = tokenize_chat(tokenizer, record.messages)
        else:
            ids, labels = tokenize(tokenizer, [text])[0], None
        row = {"name": name, "input_ids": ids, "n_bytes": len(text.encode("utf-8"))}
        if labels is not None and not data.train_on_inputs:  # what the run trained and scored: the answers
            row["labels"] = labels
        rows.append(row)
    return rows


test_documents.__test__ = False  # its name starts with "test": keep pytest from collecting it


def run_tokenizer(run: SavedRun):
    return job_tokenizer(run.config.model)


def base_fingerprint(model_source: str) -> Optional[str]:
    """"sha256:<hex>" of the weights `model_source` (a run's `model` setting) loads: the embedded model's GGUF file,
    a local folder's *.safetensors + config.json, a Hub id's locally cached snapshot; None when there are no weights
    to fingerprint (a shipped architecture config, a Hub id not downloaded). Each file's digest is cached by its
    identity under $MEMFIT_CACHE, so a repeated call on unchanged files costs stat calls (benchmarks/fingerprint_cost)."""
    memo = cache_root() / FINGERPRINT_MEMO
    if model_source.lower() == EMBEDDED:
        return folder_fingerprint(_gguf_folder(), (GGUF_FILE,), memo)
    if (CONFIG_DIR / f"{model_source.lower()}.json").exists():
        return None
    folder = Path(model_source)
    if not folder.is_dir():
        try:
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(model_source, local_files_only=True,
                                            allow_patterns=["*.safetensors", "config.json"]))
        except Exception:  # noqa: BLE001 - not cached, not a repo name, offline: nothing local to fingerprint
            return None
    try:
        return folder_fingerprint(folder, memo=memo)
    except IntegrityError:  # no safetensors: loading refuses it with its own message
        return None


def check_base(run: SavedRun, *, required: bool) -> bool:
    """Refuse a base whose weights differ from the ones the run trained on; False when they cannot be read yet (a
    Hub id before its download) and `required` is off. Runs that recorded no fingerprint pass."""
    recorded = run.results.get(BASE_FINGERPRINT)
    if not recorded:
        return True
    now = base_fingerprint(run.config.model.name)
    if now is None and not required:
        return False
    if now != recorded:
        found = f"{now[:19]}... now" if now else "no weights to fingerprint now"
        raise RunError(f"base model {run.config.model.name} is not the one run {run.path} trained on (weights "
                       f"{recorded[:19]}... recorded, {found}): restore the original weights there, or train a new "
                       f"run on this base")
    return True


def load_base(run: SavedRun, *, as_trained: bool = True, device: torch.device | None = None,
              source: str | None = None) -> torch.nn.Module:
    """The run's base model (or `source`, e.g. a full fine-tune's saved weights), not yet carrying an adapter.
    `as_trained`: loaded with the run's stack's loading settings (4-bit/8-bit weights, bf16), so scores match the
    run's own; otherwise the original full-precision weights (what a merge folds the adapter into)."""
    stack = Stack.coerce(run.stack) if as_trained else Stack()
    ctx = stack.context(device)
    checked = source is not None or check_base(run, required=False)  # `source` is checked by its own manifest
    # only the stack's loading settings: its model transforms would wrap a fresh LoRA the saved adapter then fights
    model = load_model(source or run.config.model.name, Stack(), ctx, extra_kwargs=stack.model_kwargs(ctx), seed=None)
    if not checked:  # a Hub id is on disk only now
        check_base(run, required=True)
    return model


def check_run_adapter(run: SavedRun) -> None:
    """Refuse an adapter trained for another model from the base's config alone (a weightless meta-device copy),
    before minutes of loading weights."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(load_config(run.config.model.name))
    check_adapter(skeleton, run.adapter_dir)


def is_full_fine_tune(run: SavedRun) -> bool:
    """A stack without LoRA trains (and saves) the whole model: the saved folder is itself the deployable model."""
    return (run.adapter_dir / "config.json").is_file() and not (run.adapter_dir / "adapter_config.json").is_file()


def load_trained(run: SavedRun, *, as_trained: bool = True, device: torch.device | None = None):
    """The base with the run's adapter, through the loader that refuses an adapter trained for another model; for a
    full fine-tune, its saved weights (at full precision unless `as_trained`)."""
    if is_full_fine_tune(run):
        try:  # the saved model's checksum manifest, when the run wrote one
            verify_manifest(run.adapter_dir, required=False, fix="retrain the run, or restore the folder")
        except IntegrityError as exc:
            raise RunError(f"the fine-tuned weights of run {run.path} are damaged: {exc}") from None
        return load_base(run, as_trained=as_trained, device=device, source=str(run.adapter_dir))
    check_run_adapter(run)
    return load_adapter(load_base(run, as_trained=as_trained, device=device), run.adapter_dir)
