"""Saving the trained weights at the end of a run: peft adapters (or full weights) as safetensors, never with
non-finite values, never half-written; the folder travels: it holds the tokenizer, and adapter_config.json names a
base that `AutoPeftModelForCausalLM.from_pretrained(folder)` finds offline on the machine that trained it."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from ..core.files import atomic_directory, atomic_write_json
from ..core.integrity import write_manifest
from ..quiet import transformers_bars_off
from .checkpoint import BASE_FILE, CheckpointError, base_info, nonfinite_weights

log = logging.getLogger(__name__)


def save_trained(model, acc, out: Path, tokenizer=None) -> str:
    """peft adapters (or full weights) as safetensors, written by the main process only, with the base architecture
    (memfit.training.checkpoint.load_adapter checks it before loading) and the tokenizer (`tokenizer`, else the one
    memfit.models.load_tokenizer gives for the model's name)."""
    acc.wait_for_everyone()
    state = acc.get_state_dict(model)  # gathers ZeRO-3 / FSDP shards on every rank
    bad = nonfinite_weights(acc.unwrap_model(model))
    if bad:
        raise CheckpointError(f"not saving the trained weights to {out}: {bad[:3]} hold NaN/inf (the learning rate is "
                              f"too high or the data is broken); lower the learning rate and rerun")
    if acc.is_main_process:
        try:  # a folder under the final name is always complete: written aside, then swapped in
            with atomic_directory(out) as tmp:
                net = acc.unwrap_model(model)
                # peft's default "auto" looks the base model's name up on the Hub to see whether the vocabulary
                # grew; memfit never resizes it, and the name is the user's (e.g. "smollm2-135m"), not a Hub id
                extra = {"save_embedding_layers": False} if hasattr(net, "peft_config") else {}
                with transformers_bars_off():  # a full fine-tune's "Writing model shards": the run logs the save
                    net.save_pretrained(tmp, state_dict=state, safe_serialization=True, **extra)
                atomic_write_json(tmp / BASE_FILE, base_info(acc.unwrap_model(model)), indent=None)
                point_at_loadable_base(tmp / "adapter_config.json")
                save_tokenizer(tokenizer, getattr(net, "name_or_path", None), tmp)
                write_manifest(tmp)  # last: eval, merge and generate verify every file against it
        except Exception as exc:  # noqa: BLE001 - SafetensorError on a full disk is no OSError
            raise CheckpointError(f"writing the trained weights to {out} failed ({getattr(exc, 'strerror', None) or exc}); the final "
                                  f"checkpoint (if checkpointing is on) holds them: free space and rerun with the "
                                  f"same output_dir, which resumes and only re-saves") from exc
    acc.wait_for_everyone()
    return str(out)


def loadable_base(name: str) -> str:
    """What from_pretrained can open offline for the base the user named: the embedded model's converted cache folder
    for "smollm2-135m", a local folder made absolute (the adapter may be read from anywhere), a Hub id as given (found
    in the Hub cache offline). A name without weights (a shipped architecture config: random init) stays as it is."""
    from ..models import ModelError, resolve_weights

    try:
        source = resolve_weights(name)
    except ModelError:
        return name
    return os.path.abspath(source) if Path(source).is_dir() else source


def point_at_loadable_base(adapter_config: Path) -> None:
    if not adapter_config.is_file():  # a full fine-tune: no adapter to point
        return
    config = json.loads(adapter_config.read_text())
    given = config.get("base_model_name_or_path")
    if given:
        config["base_model_name_or_path"] = loadable_base(given)
        adapter_config.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")  # inside the atomic folder


def save_tokenizer(tokenizer, model_name: str | None, folder: Path) -> None:
    """The tokenizer beside the weights, so the folder alone generates text. A base whose tokenizer cannot be loaded
    (a random-init architecture) leaves the folder without one, said in one line."""
    if tokenizer is None and model_name:
        from ..models import ModelError, load_tokenizer

        try:
            tokenizer = load_tokenizer(model_name)
        except ModelError as exc:
            log.warning(f"the saved weights in {folder.name} have no tokenizer beside them: {exc}")
            return
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
