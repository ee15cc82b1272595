"""`memfit train CONFIG.yaml [--key value ...]`: the fine-tune job from a YAML recipe; flags override the file.

Every key of the file and every flag is a field of FinetuneConfig (memfit/recipes/finetune.py), so the schema, the
flags and their help come from one place. A recipe name without a path (`memfit train smollm2-cpu`) is looked up in
the recipes memfit ships (recipes/ in the repository)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .options import ConfigError, OneLineParser, add_model_flags, load_yaml, validate

from ..bundled import RECIPES_DIR as RECIPES  # shipped in the wheel (memfit/bundled/)


def recipe_path(name: str) -> Path:
    path = Path(name)
    if path.is_file() or path.suffix in (".yaml", ".yml", ".json"):
        return path
    shipped = RECIPES / f"{name}.yaml"
    if shipped.is_file():
        return shipped
    known = ", ".join(sorted(p.stem for p in RECIPES.glob("*.yaml"))) or "none"
    raise ConfigError(f"no config file or recipe named {name!r}: pass a YAML path or one of: {known}")


def build_parser(values: dict[str, Any], prog: str = "memfit train") -> OneLineParser:
    from ..recipes.finetune import FinetuneConfig

    p = OneLineParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", nargs="?", help="YAML recipe (keys are the settings below), a recipe name or a "
                                               "run's results.json (reruns its resolved config); comes first")
    add_model_flags(p, FinetuneConfig, values)
    # the name `plan`, `bench` and `estimate` use for the same setting: one flag under two names
    p.add_argument("--model-config", dest="architecture", default=argparse.SUPPRESS, metavar="STR",
                   type=p._option_string_actions["--architecture"].type, help="the same as --architecture")
    return p


def parse_config(argv: list[str], prog: str = "memfit train", defaults: dict | None = None):
    """FinetuneConfig from `defaults` (a script's own, e.g. its bundled data), then an optional YAML file (the first
    positional argument), then flags, each overriding the one before."""
    from ..recipes.finetune import FinetuneConfig

    positional = argv[0] if argv and not argv[0].startswith("-") else None  # the file comes first
    source = recipe_path(positional) if positional else None
    values = load_yaml(source) if source else {}
    if isinstance(values.get("config"), dict):  # a results.json-style `config:` block: run it again as it was
        values = values["config"]
    values = {**(defaults or {}), **values}
    unknown = sorted(set(values) - set(FinetuneConfig.model_fields), key=str)  # YAML keys may be numbers or null
    if unknown:
        raise ConfigError(f"{source}: unknown setting(s) {', '.join(map(repr, unknown))}; "
                          f"`{prog} --help` lists the valid ones")
    args = vars(build_parser(values, prog).parse_args(argv))
    args.pop("config", None)
    return validate(FinetuneConfig, {**values, **args}, str(source or "flags"))


def cmd_train(argv: list[str]) -> int:
    from ..launch.distributed import join_launch
    from ..recipes.finetune import run_finetune

    cfg = parse_config(argv)
    join_launch()  # under `accelerate launch`: one group, each rank on its device, the summary printed once
    results = run_finetune(cfg)
    run_dir = Path(results["config"]["output_dir"]) / results["config"]["run_name"]
    print((run_dir / "summary.md").read_text())
    return 0


parse_run_config = parse_config  # public as memfit.parse_run_config (scripts such as examples/climate.py)
