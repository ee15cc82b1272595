"""`memfit` console script: train, plan, bench, estimate, stacks, eval, merge, data (`memfit COMMAND --help`).

A thin dispatcher: each command family lives in its own module (train.py; plan.py: plan, bench, estimate, stacks;
evaluate.py; merge.py)."""

from __future__ import annotations

import argparse
import logging
import sys

from .evaluate import add_eval_parser
from .merge import add_merge_parser
from .plan import add_commands as add_capacity_commands


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from ..runtime import configure_runtime

    configure_runtime()  # before anything initialises CUDA (the allocator setting is read then)
    argv = list(sys.argv[1:] if argv is None else argv)
    from .. import StackError, __version__
    from ..data import DataError
    from ..models import ModelError
    from ..training.checkpoint import CheckpointError
    from .options import ConfigError

    user_errors = (StackError, ModelError, DataError, ConfigError, CheckpointError, ValueError, FileNotFoundError)
    try:
        if argv[:1] == ["data"]:
            from .data import data_main

            return data_main(argv[1:])
        if argv[:1] == ["train"]:
            from .train import cmd_train

            return cmd_train(argv[1:])
    except user_errors as exc:  # user errors: one line that says the fix
        print(f"memfit: {exc}", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog="memfit", description=__doc__,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--version", action="version", version=f"memfit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    add_capacity_commands(sub)  # plan, bench, estimate, stacks
    add_eval_parser(sub)
    add_merge_parser(sub)
    data = sub.add_parser("data", help="`memfit data inspect DIR`: extraction artefacts and split "
                          "statistics; `memfit data fetch climate DIR`: download the full corpus, verified")
    data.set_defaults(func=lambda _args: (data.print_help(), 0)[1])  # `memfit data` alone: its help, not a crash
    sub.add_parser("train", help="fine-tune from a YAML recipe: `memfit train CONFIG.yaml [--key value ...]`",
                   add_help=False)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except user_errors as exc:  # user errors: the message says the fix
        print(f"memfit: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
