"""RoPE scaling for context past the architecture's native maximum (`memfit plan --max-seq-len --rope-scaling`).

Memory does not care how positions are rotated, but a planner that reports "trains 300k tokens" for a model whose
positions stop at 131,072 gives an answer that is wrong in practice: the model was never told how to rotate the
positions past its maximum. So the longest-context search stops at `max_position_embeddings` unless the user names a
scaling the way transformers configures it (`rope_parameters`, the `rope_scaling` of older configs), and the
probed model is built with exactly that scaling.

    --rope-scaling yarn:factor=4                  # yarn over the current maximum: 4 x 131,072 for Llama-3.1
    --rope-scaling llama3:factor=32               # Llama-3's own rule, its other parameters kept: 32 x 8,192
    --rope-scaling '{"rope_type": "linear", "factor": 2}'
    --rope-scaling yarn:factor=4,max_position_embeddings=200000   # an explicit ceiling below factor x original

The new ceiling is factor x original_max_position_embeddings. For the rope type the config already uses (Llama-3's
`llama3`) the existing parameters are kept and only the given keys change; for another type the original maximum
is the config's current `max_position_embeddings` (the context the checkpoint was trained for).
"""

from __future__ import annotations

import copy
import json
import logging
import math
from typing import Any

# rope types whose factor stretches the position range; "default" has none, "dynamic" rescales at run time
EXTENDING_TYPES = ("linear", "dynamic", "yarn", "longrope", "llama3")


class RopeScalingError(ValueError):
    """A --rope-scaling value that transformers would not accept or that does not extend the context."""


def parse_rope_scaling(text: str) -> dict[str, Any]:
    """`TYPE:key=value,...` or a JSON object -> a rope-parameters dict with `rope_type`."""
    text = text.strip()
    if text.startswith(("{", "[")):
        try:
            params = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RopeScalingError(f"--rope-scaling {text!r} is not valid JSON ({exc.msg}): write e.g. "
                                   f"yarn:factor=4 or '{{\"rope_type\": \"yarn\", \"factor\": 4}}'") from None
        if not isinstance(params, dict):
            raise RopeScalingError(f"--rope-scaling {text!r} must be a JSON object, e.g. {{\"rope_type\": \"yarn\", "
                                   f"\"factor\": 4}}")
        params = dict(params)
        params.setdefault("rope_type", params.pop("type", None))
    else:
        kind, _, rest = text.partition(":")
        params = {"rope_type": kind.strip()}
        for item in filter(None, (p.strip() for p in rest.split(","))):
            key, sep, value = item.partition("=")
            if not sep:
                raise RopeScalingError(f"--rope-scaling item {item!r} is not key=value: write e.g. yarn:factor=4")
            params[key.strip()] = _number(key.strip(), value.strip())
    if params.get("rope_type") not in EXTENDING_TYPES:
        raise RopeScalingError(f"--rope-scaling type {params.get('rope_type')!r} does not extend the context: use one "
                               f"of {', '.join(EXTENDING_TYPES)} (e.g. yarn:factor=4)")
    factor = params.get("factor")
    if not isinstance(factor, (int, float)) or isinstance(factor, bool) or not math.isfinite(factor) or factor <= 1:
        raise RopeScalingError(f"--rope-scaling needs a finite factor > 1 (got {factor!r}): e.g. "
                               f"{params['rope_type']}:factor=4")
    return params


def _number(key: str, value: str) -> float | int:
    try:
        number = float(value)
    except ValueError:
        raise RopeScalingError(f"--rope-scaling {key}={value!r} is not a number") from None
    if not math.isfinite(number):
        raise RopeScalingError(f"--rope-scaling {key}={value} must be finite")
    return int(number) if number.is_integer() and key.endswith("position_embeddings") else number


def current_rope_parameters(config) -> dict[str, Any]:
    """The config's rope parameters, whichever attribute this transformers version keeps them in."""
    params = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    return dict(params)


def scaled_config(config, scaling: dict[str, Any]):
    """A copy of `config` with `scaling` applied and `max_position_embeddings` raised to the new ceiling; refused when
    transformers' own validation objects or the ceiling does not pass the current maximum."""
    scaling = dict(scaling)
    native = int(config.max_position_embeddings)
    ceiling = scaling.pop("max_position_embeddings", None)
    current = current_rope_parameters(config)
    if current.get("rope_type") == scaling["rope_type"]:
        params = {**current, **scaling}  # Llama-3 keeps its low/high frequency factors and its original 8,192
    else:
        params = {"rope_theta": current.get("rope_theta", getattr(config, "rope_theta", 10000.0)), **scaling}
        if scaling["rope_type"] in ("yarn", "longrope", "llama3"):
            params.setdefault("original_max_position_embeddings", native)
    original = int(params.get("original_max_position_embeddings", native))
    reach = int(params["factor"] * original)
    ceiling = reach if ceiling is None else int(ceiling)
    if ceiling <= native:
        raise RopeScalingError(f"--rope-scaling {scaling['rope_type']} x {params['factor']:g} over "
                               f"{original:,} positions reaches {ceiling:,}, not past the model's "
                               f"{native:,}: raise the factor")
    if ceiling > reach:
        raise RopeScalingError(f"--rope-scaling max_position_embeddings={ceiling:,} is past what the scaling "
                               f"covers ({params['factor']:g} x {original:,} = {reach:,}): raise the factor")
    out = copy.deepcopy(config)
    out.rope_parameters = params
    out.max_position_embeddings = ceiling
    _validate(out)
    return out


def config_overrides(config, scaling: dict[str, Any]) -> dict[str, Any]:
    """The config attributes a model load must set for `scaling` (validated): `memfit.load_model(config_overrides=)`."""
    out = scaled_config(config, scaling)
    return {"rope_parameters": dict(out.rope_parameters), "max_position_embeddings": out.max_position_embeddings}


def _validate(config) -> None:
    """transformers validates rope parameters by logging warnings (and raising only for missing keys); a warning here
    means the model would silently run another rotation than the one asked for, so it is refused."""
    if not hasattr(config, "validate_rope"):
        return  # a transformers without the validation method: nothing more to check than we did
    from transformers.utils import logging as hf_logging

    seen: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING:
                seen.append(record.getMessage())

    handler, logger = _Collect(), hf_logging.get_logger("transformers.modeling_rope_utils")
    logger.addHandler(handler)
    try:
        config.standardize_rope_params()
        config.validate_rope()
    except (KeyError, ValueError, TypeError) as exc:
        seen.append(str(exc).strip("\"'"))
    finally:
        logger.removeHandler(handler)
    if seen:
        raise RopeScalingError(f"--rope-scaling rejected by transformers: {seen[0]}")
