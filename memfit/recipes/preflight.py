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
from ..training.checkpoint import CheckpointError, ensure_writable

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


def model_config_without_weights(source: str):
    """(transformers config, note) for `source`, never touching its weights. A Hub id whose name is a shipped
    architecture (meta-llama/Llama-3.2-3B) reads the shipped config: the same architecture, no download or login.
    The embedded model's config comes from its converted copy or, before the one-time conversion, its GGUF header."""
    from transformers import AutoConfig

    from ..models import GGUF_FILE, _gguf_folder, cache_root, shipped_configs

    if source.lower() == EMBEDDED:
        cached = cache_root() / "models" / EMBEDDED
        if (cached / "config.json").is_file():
            return AutoConfig.from_pretrained(cached), ""
        return AutoConfig.from_pretrained(_gguf_folder(), gguf_file=GGUF_FILE), ""
    name = Path(source).name.lower()
    if not Path(source).exists() and name in shipped_configs():
        note = "" if name == source.lower() else f"architecture from the shipped config {name}"
        return load_config(name), note
    return load_config(source), ""


def _check_model(cfg: "FinetuneConfig") -> None:
    """Refuses a model that does not exist, or a sequence length beyond it when its config can be read without the
    weights (a Hub id's is checked right after loading)."""
    source = cfg.architecture or cfg.model
    shipped = (CONFIG_DIR / f"{source.lower()}.json").exists() or source.lower() == EMBEDDED
    path = Path(source).expanduser()
    if not shipped and not path.exists() and not (_HUB_ID.match(source) and not source.startswith(".")):
        raise ConfigError(f"model {source!r} does not exist: pass an existing model folder, a shipped config "
                          f"(--architecture llama-3.2-1b) or a Hub id like HuggingFaceTB/SmolLM2-135M")
    if not (shipped or path.exists()):
        return  # a Hub id only the loader can reach: plan() checks the sequence length right after loading
    max_positions = getattr(model_config_without_weights(source)[0], "max_position_embeddings", None)
    try:
        check_seq_lens([cfg.seq_len], max_positions)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _check_plan_cache(cfg: "FinetuneConfig") -> None:
    """A plan cache that is a file (`--plan-cache /dev/null`) would fail only after the probes ran: refuse it now."""
    if cfg.plan_cache is None:
        return
    path = Path(cfg.plan_cache).expanduser()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--plan-cache {cfg.plan_cache} is not a folder: pass a folder for the planner's cache "
                          f"(default $MEMFIT_CACHE/plans)")
    try:
        ensure_writable(path)
    except CheckpointError:
        raise ConfigError(f"--plan-cache {cfg.plan_cache} is not a writable folder: pass one you can write to") \
            from None


def source_folders(cfg: "FinetuneConfig") -> list[Path]:
    """The local paths the run reads training data from (Hub ids have none)."""
    paths = [s.path for s in cfg.sources if getattr(s, "path", None)] if cfg.sources else [cfg.pdf_dir]
    return [Path(p).expanduser() for p in paths]


def check_output_outside_sources(run_dir: Path, cfg: "FinetuneConfig") -> None:
    """A run folder inside a data folder: its summary, results and adapter would be read back as training documents
    by the next run over that folder."""
    out = run_dir.expanduser().resolve()
    for source in source_folders(cfg):
        folder = source.resolve()
        if folder.is_dir() and out.is_relative_to(folder):
            raise ConfigError(f"the run folder {run_dir} lies inside the data source {source}: its files would "
                              f"become training documents of the next run; pass an --output-dir outside {source}")


def preflight(cfg: "FinetuneConfig") -> Path:
    """Validate the resolved config, the stack, the model source and the output folder; returns the run folder."""
    cfg = _validated(cfg)
    run_dir = run_dir_of(cfg)
    if str(cfg.stack).strip().lower() != "auto":  # 'auto' is chosen by the planner's probes, later
        check_launch(Stack.coerce(cfg.stack))  # StackError names the bad part of the spec
    _check_model(cfg)
    _check_plan_cache(cfg)
    check_output_outside_sources(run_dir, cfg)
    ensure_writable(run_dir)
    return run_dir


def check_data_fits(target_effective_batch: int, blocks: int, seq_len: int) -> None:
    """An optimizer step larger than the data would accumulate for ever without one step of progress."""
    if target_effective_batch > blocks:
        raise ConfigError(f"--target-effective-batch {target_effective_batch} is larger than the {blocks} training "
                          f"blocks of {seq_len} tokens: pass --target-effective-batch {max(1, blocks // 4)} or less, "
                          f"or add PDFs")
