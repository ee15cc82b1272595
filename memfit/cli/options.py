"""Command-line flags generated from a pydantic model, so the model stays the one source of truth for every setting:
its fields are the YAML keys and the `--flags`, its `Field(description=...)` the help text, its validators the checks.
A field added to the model appears here with no edit."""

from __future__ import annotations

import argparse
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from ..core.errors import ConfigError


# what yaml loading raises besides YAMLError: ValueError for impossible dates (2001-13-01), RecursionError for
# thousands of nested brackets
YAML_ERRORS = (yaml.YAMLError, ValueError, RecursionError)


class StrictLoader(yaml.SafeLoader):
    """yaml's SafeLoader, refusing what makes a run config mean something else than it reads: a key given twice (the
    safe loader silently keeps the last `lr`) and aliases (`*name`: a few lines of anchors expand to gigabytes - the
    "billion laughs" - and a run config never needs them). Both fail while composing, before anything expands."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.events.AliasEvent):
            event = self.peek_event()
            raise yaml.constructor.ConstructorError(None, None, f"alias *{event.anchor} is not allowed in a run "
                                                    "config: write the value out", event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:  # an unhashable key: SafeLoader reports it itself
                    continue
                if duplicate:
                    raise yaml.constructor.ConstructorError(None, None, f"key {key!r} is given twice: keep one",
                                                            key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def strict_yaml(text: str) -> Any:
    """The YAML value of `text` (StrictLoader: no duplicate keys, no aliases)."""
    return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - a SafeLoader subclass


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line naming it and where the help is, not the whole usage block."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (`{self.prog} --help` lists every setting)\n")


def bounded(kind: type, low: float | None = None, high: float | None = None, *, high_open: bool = False):
    """An argparse type: `kind` (int or float), finite, within [low, high] (or [low, high) with high_open) and a count
    no larger than limits.MAX_COUNT, so every numeric flag of the capacity commands is refused at parse time."""
    from ..recipes.limits import number_problem

    def convert(text: str):
        try:
            value = kind(text)
        except (ValueError, OverflowError):
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}")
        problem = number_problem(value)
        if problem is None and low is not None and value < low:
            problem = f"{value} is below {low}"
        if problem is None and high is not None and (value >= high if high_open else value > high):
            problem = f"{value} must be {'below' if high_open else 'at most'} {high}"
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    convert.__name__ = kind.__name__
    return convert


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return "|".join(map(str, typing.get_args(annotation)))
    if origin is typing.Annotated:  # e.g. a discriminated union: its Field metadata is no type
        return type_name(typing.get_args(annotation)[0])
    if origin in (list, tuple):  # given as YAML text, e.g. --sources '[{kind: text, path: notes}]'
        return "list"
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if args:
        return " or ".join(type_name(a) for a in args)
    return getattr(annotation, "__name__", str(annotation))


def _converter(name: str, annotation: Any):
    """Parse a flag value as YAML (so 3, 1e-3, true, null mean what they do in a config file), then let the field's
    own type validate it; a plain string is the fallback for str fields (a run name "123" stays a string)."""
    adapter = TypeAdapter(annotation)

    def convert(text: str):
        try:
            parsed = strict_yaml(text) if text.strip() else text
        except YAML_ERRORS:  # not YAML at all ("[", "2001-13-01"): only the plain string remains
            parsed = text
        for candidate in (parsed, text):
            try:
                return adapter.validate_python(candidate)
            except ValidationError:
                continue
        raise argparse.ArgumentTypeError(f"{text!r} is not a valid {type_name(annotation)}")

    convert.__name__ = type_name(annotation)
    return convert


def default_note(value: Any) -> str:
    """` (default: value)` for a help line; nothing for an unset (None) setting, whose description says what the run
    does without it (a help reading "default: None" answers nothing)."""
    return "" if value is None else f" (default: {value!r})"


class EffectiveDefaults(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's defaults formatter without "(default: None)" and without a second default after a help text that
    already states its own."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is argparse.SUPPRESS or "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def add_flags(parser: argparse.ArgumentParser, fields, shown: dict[str, Any]) -> None:
    """One `--name` (plus `--alias`es) per (name, aliases, FieldInfo) of `fields`. Defaults stay SUPPRESS so only
    flags the user typed override the file; the help shows `shown[name]`, the value the run will use."""
    for name, aliases, info in fields:
        value = shown.get(name, info.default)
        if isinstance(value, list) and value and isinstance(value[0], BaseModel):  # e.g. sources: as YAML has them
            value = [item.model_dump(exclude_unset=True) for item in value]
        parser.add_argument(flag(name), *map(flag, aliases), default=argparse.SUPPRESS, dest=name,
                            metavar=type_name(info.annotation).upper(), type=_converter(name, info.annotation),
                            help=f"{info.description or ''}{default_note(value)}".strip())


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist: pass a YAML file (see recipes/*.yaml)")
    try:
        data = strict_yaml(path.read_text()) or {}
    except YAML_ERRORS as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"{path} is not valid YAML ({first}): fix the file") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of settings (key: value), not a {type(data).__name__}")
    return data


def validate(model: type[BaseModel], values: dict[str, Any], source: str, name_of=None):
    """The model built from `values`, or one ConfigError line per problem naming the setting (as a flag and a key);
    `name_of(loc)` names a nested setting by its flag (default: the dotted path)."""
    name_of = name_of or (lambda loc: ".".join(map(str, loc)))
    try:
        return model(**values)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            key = name_of(err["loc"])
            message = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                lines.append(f"{source}: unknown setting '{key}'; `memfit train --help` lists the valid ones")
            elif isinstance(err.get("input"), dict):  # a whole section's check: its message names the setting
                lines.append(f"{source}: {message}")
            else:
                lines.append(f"{source}: {key} ({flag(key)}) = {err.get('input')!r}: {message}")
        raise ConfigError("; ".join(lines)) from None
