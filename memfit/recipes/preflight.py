"""Every check the fine-tune job can make before it extracts, loads or plans anything: a wrong setting costs seconds,
not the minutes of extraction, model loading, planning and the base evaluation that come before training."""
from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from ..core.errors import ConfigError
from ..core.stack import Stack
from ..launch.distributed import check_launch
from ..models import EMBEDDED, CONFIG_DIR, load_config, load_tokenizer
from ..plan.planner import check_seq_lens
from ..training.checkpoint import ensure_writable

if TYPE_CHECKING:
    from .run_config import FinetuneConfig
    from .sections import ModelSection

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def run_dir_of(cfg: "FinetuneConfig") -> Path:
    """`<output_dir>/<run_name>`, refusing a run name that would write elsewhere (absolute, `..`, separators)."""
    name = cfg.run_name or ""
    if not name or Path(name).is_absolute() or Path(name).name != name or name in (".", ".."):
        raise ConfigError(f"--run-name {name!r} must be a plain folder name inside --output-dir (no '/', '..' or "
                          f"absolute path): use --output-dir to choose where results go")
    return Path(cfg.output_dir) / name


def validated(cfg: "FinetuneConfig", **overrides) -> "FinetuneConfig":
    """`cfg` with flat `overrides`, validated once more (a config changed in code may skip pydantic); one
    ConfigError line naming the setting by its flag otherwise."""
    from .run_config import flag_of

    try:
        # exclude_unset: what the user left unset stays unset, so the device defaults still fill it in resolved()
        return cfg.updated(**overrides) if overrides else type(cfg).model_validate(cfg.model_dump(exclude_unset=True))
    except (ValidationError, ValueError) as exc:
        if not isinstance(exc, ValidationError):
            raise ConfigError(str(exc)) from None
        err = exc.errors()[0]
        raise ConfigError(f"setting {flag_of(err['loc'])}={err.get('input')!r}: {err['msg']}; pass a valid value "
                          f"(memfit train --help lists them)") from None


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
    source = cfg.model.source
    shipped = (CONFIG_DIR / f"{source.lower()}.json").exists() or source.lower() == EMBEDDED
    path = Path(source).expanduser()
    if not shipped and not path.exists() and not (_HUB_ID.match(source) and not source.startswith(".")):
        raise ConfigError(f"model {source!r} does not exist: pass an existing model folder, a shipped config "
                          f"(--architecture llama-3.2-1b) or a Hub id like HuggingFaceTB/SmolLM2-135M")
    if not (shipped or path.exists()):
        return  # a Hub id only the loader can reach: plan() checks the sequence length right after loading
    max_positions = getattr(model_config_without_weights(source)[0], "max_position_embeddings", None)
    try:
        check_seq_lens([cfg.data.seq_len], max_positions)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _check_caches(cfg: "FinetuneConfig") -> None:
    """$MEMFIT_CACHE and --plan-cache as writable folders: a file, a device (/dev/null) or a read-only folder there
    would fail only after the extraction, the model conversion or the probes ran."""
    from ..core.files import check_cache_dir
    from ..models import cache_root

    try:
        check_cache_dir(cache_root(), "MEMFIT_CACHE")
        if cfg.plan.plan_cache is not None:
            check_cache_dir(cfg.plan.plan_cache, "--plan-cache")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def check_run_dir_outside_data(run_dir: Path, cfg: "FinetuneConfig") -> None:
    """A run folder inside a data folder: its summary, results and adapter would be read back as training documents
    by the next run over that folder (memfit.data's check)."""
    from ..data.sources import check_output_outside_sources as outside

    try:
        outside(run_dir, cfg.data.sources)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def read_chat_template(value: str) -> str:
    """`model.chat_template`: a file holding the Jinja template, or the template text itself."""
    path = Path(value).expanduser()
    if "{" not in value and len(value) < 4096 and path.is_file():
        return path.read_text(encoding="utf-8")
    if "{" not in value:
        raise ConfigError(f"chat_template {value!r} is neither a file nor a Jinja template: pass a template file "
                          f"or its text ({{% for message in messages %}}...)")
    return value


def check_vocabulary(tokenizer, config, model: str) -> None:
    """Token ids at or past the model's vocabulary would index outside its embedding (a crash on CPU, garbage or a
    device assert on CUDA): a tokenizer larger than the model (SmolLM2's 49,152 ids for a 32,768-id Mistral config) is
    refused before any data is tokenised or any weight loaded."""
    size, vocab = len(tokenizer), getattr(config, "vocab_size", None)
    if vocab is not None and size > vocab:
        raise ConfigError(f"the tokenizer has {size:,} tokens but model {model} embeds only {vocab:,}: pass the "
                          f"model's own tokenizer with --tokenizer (a folder or Hub id), or a config whose vocab_size "
                          f"is at least {size:,}")


def job_tokenizer(model: "ModelSection"):
    """The run's tokenizer: `model.tokenizer` or the model's own, with `model.chat_template` in place of its
    template (the chat data are rendered with it)."""
    tokenizer = load_tokenizer(model.tokenizer or (None if model.config else model.name))
    if model.chat_template:
        tokenizer.chat_template = read_chat_template(model.chat_template)
    return tokenizer


def preflight(cfg: "FinetuneConfig") -> Path:
    """Validate the resolved config, the stack, the model source and the output folder; returns the run folder."""
    cfg = validated(cfg)
    run_dir = run_dir_of(cfg)
    if str(cfg.stack).strip().lower() != "auto":  # 'auto' is chosen by the planner's probes, later
        stack = Stack.coerce(cfg.stack)  # StackError names the bad part of the spec ('+++' included)
        check_launch(stack)
    if cfg.model.chat_template:
        read_chat_template(cfg.model.chat_template)
    _check_model(cfg)
    _check_caches(cfg)
    check_run_dir_outside_data(run_dir, cfg)
    ensure_writable(run_dir)
    return run_dir


def fitted_effective_batch(blocks: int) -> int:
    """The largest effective batch that still gives an epoch of `blocks` 4 optimizer steps."""
    return max(1, blocks // 4)


def check_data_fits(target_effective_batch: int, blocks: int, seq_len: int, in_stack: bool = False) -> None:
    """An optimizer step larger than the data would accumulate for ever without one step of progress. `in_stack`:
    the user's stack names the target itself (its 'ga:effective_batch=N' wins over the flag), so the fix is there."""
    if target_effective_batch <= blocks:
        return
    fitted = fitted_effective_batch(blocks)
    if in_stack:
        raise ConfigError(f"the stack's ga:effective_batch={target_effective_batch} is larger than the {blocks} "
                          f"training blocks of {seq_len} tokens: set it to {fitted} or less in --stack, or add data")
    raise ConfigError(f"--target-effective-batch {target_effective_batch} is larger than the {blocks} training "
                      f"blocks of {seq_len} tokens: pass --target-effective-batch {fitted} or less, or add PDFs")
