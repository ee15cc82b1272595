"""`memfit` console script: train, plan, bench, estimate, stacks, eval, data (`memfit COMMAND --help`).

A thin dispatcher: each command family lives in its own module (train.py; plan.py: plan, bench, estimate, stacks)."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from .plan import add_commands as add_capacity_commands


def cmd_eval(args) -> int:
    import json

    from ..data import build_datasets, extract_pdfs
    from ..evaluation import perplexity
    from ..models import load_model, load_tokenizer

    model = load_model(args.model, args.stack)
    if args.adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, args.adapter)
        if args.merge:  # what users deploy: the adapter folded into the full-precision weights
            model = model.merge_and_unload()
    tok = load_tokenizer(args.model)
    bundle = build_datasets(extract_pdfs(args.data), tok, test_fraction=args.test_fraction, seed=args.seed)
    res = perplexity(model, bundle.test, context_length=args.context, stride=args.stride, batch_size=args.batch_size,
                     progress=True)
    print(json.dumps(res.to_dict(), indent=2))
    return 0


def cmd_data(args, rest: list[str]) -> int:
    from ..data import inspect_main

    return inspect_main(rest)


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
        if argv[:2] == ["data", "inspect"]:
            return cmd_data(None, argv[2:])
        if argv[:2] == ["data", "fetch"]:
            from ..data.fetch import fetch_main

            return fetch_main(argv[2:])
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
    p = sub.add_parser("eval", help="perplexity and bits/byte on the test documents of a PDF folder")
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--adapter")
    p.add_argument("--merge", action="store_true", help="fold the adapter into the weights before scoring")
    p.add_argument("--stack", default="none")
    p.add_argument("--data", required=True, help="folder of PDFs")
    p.add_argument("--context", type=int, default=512)
    p.add_argument("--stride", type=int)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_eval)
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
