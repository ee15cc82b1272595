"""Strategy registry: built-ins register with a decorator, plugins through the `memfit.strategies` entry points.

Spec grammar (one item per strategy, joined with '+'):  ``name[:key=value,key=value]``.
A trailing number is the strategy's shorthand argument (``ga8`` -> GradientAccumulation(steps=8)),
and lists are written with '|' (``lora:targets=q_proj|v_proj``).
"""

from __future__ import annotations

import difflib
import re
from importlib.metadata import entry_points
from typing import Any

from .protocol import StackError, declared

_REGISTRY: dict[str, tuple[type, dict[str, Any]]] = {}  # spec name -> (class, arguments the name implies)
_PLUGINS_LOADED = False
ENTRY_POINT_GROUP = "memfit.strategies"


def register_strategy(cls: type | None = None, *, aliases: tuple[str, ...] | dict[str, dict[str, Any]] = ()):
    """Class decorator: make a strategy usable by name in specs and YAML.

    `aliases` is a tuple of extra names, or a dict mapping a name to the arguments it implies
    (``{"bf16": {"dtype": "bf16"}}``)."""
    alias_map = aliases if isinstance(aliases, dict) else {a: {} for a in aliases}

    def wrap(c: type) -> type:
        for key, implied in {c.name: {}, **alias_map}.items():
            existing = _REGISTRY.get(key, (None,))[0]
            if existing is not None and existing.__qualname__ != c.__qualname__:
                raise StackError(f"strategy name {key!r} is already taken by {existing.__module__}.{existing.__name__}")
            _REGISTRY[key] = (c, dict(implied))
        return c

    return wrap(cls) if cls is not None else wrap


def load_plugins() -> None:
    """Import every strategy advertised under the `memfit.strategies` entry-point group (once)."""
    global _PLUGINS_LOADED
    if _PLUGINS_LOADED:
        return
    import memfit.strategies  # the built-ins register on import of their modules; `import memfit` alone stays light

    memfit.strategies.register_builtins()

    _PLUGINS_LOADED = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = ep.load()
        except Exception as exc:  # a broken plugin must not take the built-ins down with it
            import warnings

            warnings.warn(f"memfit plugin {ep.name!r} ({ep.value}) failed to load: {exc}", stacklevel=2)
            continue
        if ep.name not in _REGISTRY:
            register_strategy(cls, aliases=(ep.name,) if ep.name != getattr(cls, "name", None) else ())


def reload_plugins() -> None:
    global _PLUGINS_LOADED
    _PLUGINS_LOADED = False
    load_plugins()


def available() -> dict[str, type]:
    load_plugins()
    return {k: v[0] for k, v in sorted(_REGISTRY.items())}


def strategy_class(name: str) -> tuple[type, dict[str, Any]]:
    """Resolve a spec name (maybe with a shorthand number) to its class and the arguments the shorthand implies."""
    load_plugins()
    key = name.strip().lower()
    if key in _REGISTRY:
        cls, implied = _REGISTRY[key]
        return cls, dict(implied)
    m = re.fullmatch(r"([a-z_]+?)(\d+(?:\.\d+)?)", key)
    if m and m.group(1) in _REGISTRY:
        cls, implied = _REGISTRY[m.group(1)]
        field = declared(cls, "shorthand")
        if field:
            return cls, {**implied, field: _coerce(m.group(2))}
    close = difflib.get_close_matches(key, list(_REGISTRY), n=1)
    if close:  # a typo: the fix, not the whole list
        raise StackError(f"unknown strategy {name!r}: did you mean {close[0]!r}? ('memfit stacks' lists them all)")
    known = ", ".join(sorted(_REGISTRY))
    raise StackError(f"unknown strategy {name!r}. Known strategies: {known}. Plugins register under the "
                     f"'{ENTRY_POINT_GROUP}' entry-point group.")


def _coerce(value: str) -> Any:
    v = value.strip()
    if "|" in v:
        return [_coerce(x) for x in v.split("|") if x]
    if v.lower() == "none":
        return None
    if v.lower() in ("true", "false"):
        return v.lower() == "true"
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    return v


def parse_item(item: str) -> tuple[type, dict[str, Any]]:
    name, _, arg_text = item.partition(":")
    cls, kwargs = strategy_class(name)
    for pair in filter(None, (p.strip() for p in arg_text.split(","))):
        key, eq, value = pair.partition("=")
        if not eq:
            raise StackError(f"bad argument {pair!r} in {item!r}: write key=value, e.g. 'lora:r=16'")
        kwargs[key.strip()] = _coerce(value)
    return cls, kwargs
