"""`memfit train CONFIG.yaml [--key value ...]`: the fine-tune job from a YAML recipe; flags override the file.

Every key of the file and every flag is a setting of FinetuneConfig (memfit/recipes/run_config.py): sections model,
data, plan, train, eval, each setting with one flat name (`--lr`, `--seq-len`, `--model-config`) that the file may
use as a top-level key too; the schema, the flags and their help come from one place. A recipe name without a path
(`memfit train smollm2-cpu`) is looked up in the recipes memfit ships (memfit/bundled/recipes)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..bundled import RECIPES_DIR as RECIPES  # shipped in the wheel (memfit/bundled/)
from ..core.errors import ConfigError
from .options import OneLineParser, add_flags, load_yaml, validate


def recipe_path(name: str) -> Path:
    path = Path(name)
    if path.is_file() or path.suffix in (".yaml", ".yml", ".json"):
        return path
    shipped = RECIPES / f"{name}.yaml"
    if shipped.is_file():
        return shipped
    known = ", ".join(sorted(p.stem for p in RECIPES.glob("*.yaml"))) or "none"
    raise ConfigError(f"no config file or recipe named {name!r}: pass a YAML path or one of: {known}")


def _device() -> str:
    """The device whose defaults the help shows. torch is not imported for --help (seconds of startup) unless a
    run follows: an NVIDIA driver on the machine means the run will see CUDA (the rare CPU-only torch on a GPU host
    shows CUDA defaults in the help; the run itself resolves its defaults from torch)."""
    import sys
    from pathlib import Path

    if "torch" in sys.modules:
        return "cuda" if sys.modules["torch"].cuda.is_available() else "cpu"
    return "cuda" if Path("/proc/driver/nvidia/version").exists() else "cpu"


def effective_values(nested: dict[str, Any]) -> dict[str, Any]:
    """{flat name: the value a run with these settings uses on this device} for the help; the unresolved values when
    the settings do not validate yet (the parse that follows names the problem)."""
    from pydantic import ValidationError

    from ..recipes.run_config import FinetuneConfig

    try:
        return FinetuneConfig.model_validate(nested).resolved(_device()).flat()
    except (ValidationError, ValueError):
        return FinetuneConfig().resolved(_device()).flat()


def source_keys() -> str:
    """The keys of each `sources` entry, read from the source models (memfit.data.sources), for the help."""
    import typing

    from ..data.sources import Source

    kinds, common = [], None
    for model in typing.get_args(typing.get_args(Source)[0]):
        keys = [k for k in model.model_fields if k != "kind"]
        shared = set(keys) if common is None else common & set(keys)
        common = shared
        kinds.append((model.model_fields["kind"].default, keys))
    lines = [f"  {kind:<6} {', '.join(k for k in keys if k not in common)}" for kind, keys in kinds]
    return ("keys of each --sources entry, e.g. --sources '[{kind: table, path: chat.jsonl, format: chat}]' (table/saved/"
            "hub: format text|chat|prompt_completion, with the column named by text_column, messages_column or "
            "prompt_column + completion_column):\n"
            + "\n".join(lines) + f"\n  every  {', '.join(sorted(common))}")


def train_parser(nested: dict[str, Any], prog: str = "memfit train") -> OneLineParser:
    from ..recipes.run_config import FLAT, FLAT_OF, SECTIONS, FinetuneConfig

    p = OneLineParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                      epilog=source_keys())
    p.add_argument("config", nargs="?", help="YAML recipe (keys are the settings below), a recipe name or a "
                                               "run's results.json (reruns its resolved config); comes first")
    shown = effective_values(nested)
    groups = {None: p, **{name: p.add_argument_group(f"{name} settings") for name in SECTIONS}}
    for (section, field), name in FLAT_OF.items():
        info = (SECTIONS[section] if section else FinetuneConfig).model_fields[field]
        aliases = [alias for alias, where in FLAT.items() if where == (section, field) and alias != name]
        add_flags(groups[section], [(name, aliases, info)], shown)
    return p


def parse_config(argv: list[str], prog: str = "memfit train", defaults: dict | None = None):
    """FinetuneConfig from `defaults` (a script's own, e.g. its bundled data), then an optional YAML file (the first
    positional argument), then flags, each overriding the one before."""
    from ..recipes.run_config import FinetuneConfig, flag_of, merged_settings, nest

    positional = argv[0] if argv and not argv[0].startswith("-") else None  # the file comes first
    source = recipe_path(positional) if positional else None
    values = load_yaml(source) if source else {}
    if isinstance(values.get("config"), dict):  # a results.json-style `config:` block: run it again as it was
        values = values["config"]
    try:
        nested = merged_settings(nest(defaults or {}), nest(values))
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    unknown = sorted(set(nested) - set(FinetuneConfig.model_fields), key=str)  # YAML keys may be numbers or null
    if unknown:
        raise ConfigError(f"{source}: unknown setting(s) {', '.join(map(repr, unknown))}; "
                          f"`{prog} --help` lists the valid ones")
    args = vars(train_parser(nested, prog).parse_args(argv))
    args.pop("config", None)
    return validate(FinetuneConfig, merged_settings(nested, nest(args)), str(source or "flags"), flag_of)


def cmd_train(argv: list[str]) -> int:
    cfg = parse_config(argv)  # --help exits here, before torch and the job's modules are imported
    from ..launch.distributed import join_launch
    from ..recipes.finetune import run_finetune

    join_launch()  # under `accelerate launch`: one group, each rank on its device, the summary printed once
    results = run_finetune(cfg)
    run_dir = Path(results["config"]["output_dir"]) / results["config"]["run_name"]
    print((run_dir / "summary.md").read_text())
    return 0


parse_run_config = parse_config  # public as memfit.parse_run_config (scripts such as examples/climate.py)
