"""Every check the fine-tune job can make before it extracts, loads or plans anything: a wrong setting costs seconds,
not the minutes of extraction, model loading, planning and the base evaluation that come before training."""
from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from ..core.stack import Stack
from ..launch.distributed import check_launch
from ..models import EMBEDDED, CONFIG_DIR, load_config
from ..plan.planner import check_seq_lens
from ..training.checkpoint import ensure_writable

if TYPE_CHECKING:
    from .finetune import FinetuneConfig

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ConfigError(ValueError):
    """A fine-tune setting that cannot work; the message names the setting and the fix."""


def run_dir_of(cfg: "FinetuneConfig") -> Path:
    """`<output_dir>/<run_name>`, refusing a run name that would write elsewhere (absolute, `..`, separators)."""
    name = cfg.run_name or ""
    if not name or Path(name).is_absolute() or Path(name).name != name or name in (".", ".."):
        raise ConfigError(f"--run-name {name!r} must be a plain folder name inside --output-dir (no '/', '..' or "
                          f"absolute path): use --output-dir to choose where results go")
    return Path(cfg.output_dir) / name


def _validated(cfg: "FinetuneConfig") -> "FinetuneConfig":
    """Overrides merged with model_copy(update=...) skip pydantic: validate the merged settings once more."""
    try:
        return type(cfg).model_validate(cfg.model_dump())
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"setting {field}={err.get('input')!r}: {err['msg']}; pass a valid value "
                          f"(memfit finetune --help lists them)") from None


def _check_model(cfg: "FinetuneConfig") -> None:
    source = cfg.architecture or cfg.model
    shipped = (CONFIG_DIR / f"{source.lower()}.json").exists() or source.lower() == EMBEDDED
    path = Path(source).expanduser()
    if not shipped and not path.exists() and not (_HUB_ID.match(source) and not source.startswith(".")):
        raise ConfigError(f"model {source!r} does not exist: pass an existing model folder, a shipped config "
                          f"(--architecture llama-3.2-1b) or a Hub id like HuggingFaceTB/SmolLM2-135M")
    if source.lower() == EMBEDDED or not (shipped or path.exists()):
        # a Hub id only the loader can reach; the embedded model's config needs its one-time GGUF conversion.
        # For both, plan() checks the sequence length right after loading, still before any training.
        return
    max_positions = getattr(load_config(source), "max_position_embeddings", None)
    try:
        check_seq_lens([cfg.seq_len], max_positions)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def preflight(cfg: "FinetuneConfig") -> Path:
    """Validate the resolved config, the stack, the model source and the output folder; returns the run folder."""
    cfg = _validated(cfg)
    run_dir = run_dir_of(cfg)
    if str(cfg.stack).strip().lower() != "auto":  # 'auto' is chosen by the planner's probes, later
        check_launch(Stack.coerce(cfg.stack))  # StackError names the bad part of the spec
    _check_model(cfg)
    ensure_writable(run_dir)
    return run_dir


def check_data_fits(target_effective_batch: int, blocks: int, seq_len: int) -> None:
    """An optimizer step larger than the data would accumulate for ever without one step of progress."""
    if target_effective_batch > blocks:
        raise ConfigError(f"--target-effective-batch {target_effective_batch} is larger than the {blocks} training "
                          f"blocks of {seq_len} tokens: pass --target-effective-batch {max(1, blocks // 4)} or less, "
                          f"or add PDFs")
