"""Saving the trained weights at the end of a run: peft adapters (or full weights) as safetensors, never with
non-finite values, never half-written."""

from __future__ import annotations

from pathlib import Path

from ..core.files import atomic_directory, atomic_write_json
from .checkpoint import BASE_FILE, CheckpointError, base_info, nonfinite_weights


def save_trained(model, acc, out: Path) -> str:
    """peft adapters (or full weights) as safetensors, written by the main process only, with the base architecture
    (memfit.training.checkpoint.load_adapter checks it before loading)."""
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
                net.save_pretrained(tmp, state_dict=state, safe_serialization=True, **extra)
                atomic_write_json(tmp / BASE_FILE, base_info(acc.unwrap_model(model)), indent=None)
        except Exception as exc:  # noqa: BLE001 - SafetensorError on a full disk is no OSError
            raise CheckpointError(f"writing the trained weights to {out} failed ({getattr(exc, 'strerror', None) or exc}); the final "
                                  f"checkpoint (if checkpointing is on) holds them: free space and rerun with the "
                                  f"same output_dir, which resumes and only re-saves") from exc
    acc.wait_for_everyone()
    return str(out)
