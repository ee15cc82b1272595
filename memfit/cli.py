"""`memfit` console script: plan, bench, eval, train, stacks, data inspect."""

from __future__ import annotations

import argparse
import logging
import sys


def _model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--model", default="smollm2-135m", help="embedded default, local dir or Hub id")
    g.add_argument("--model-config", help="shipped architecture (llama-3.2-1b/3b, llama-3.1-8b) or config JSON; "
                                          "implies --random-init")
    p.add_argument("--random-init", action="store_true", help="random weights (memory/speed do not depend on them)")


def _plan_args(p: argparse.ArgumentParser) -> None:
    _model_args(p)
    p.add_argument("--seq-len", type=int, nargs="+", default=[512])
    p.add_argument("--margin", type=float, default=0.03, help="fraction of device memory kept free")
    p.add_argument("--target-effective-batch", type=int)
    p.add_argument("--eval-batch-size", type=int, default=0)
    p.add_argument("--fresh", action="store_true", help="ignore cached plans and probe again")
    p.add_argument("--cpu-budget-gib", type=float, help="CPU only: simulated device memory for the search")
    p.add_argument("--out", help="directory for the JSON/Markdown/PNG report")
    p.add_argument("--name", default=None)


def cmd_plan(args) -> int:
    from .plan.bench import bench

    model = args.model_config or args.model
    bench(model, args.stack, args.seq_len, random_init=bool(args.model_config) or args.random_init,
          margin=args.margin, eval_batch_size=args.eval_batch_size, target_effective_batch=args.target_effective_batch,
          fresh=args.fresh, cpu_budget_gib=args.cpu_budget_gib, out_dir=args.out,
          name=args.name or args.command)
    return 0


def cmd_stacks(args) -> int:
    from . import Stack, available_strategies

    for name, cls in available_strategies().items():
        print(f"{name:<16} {cls.__module__.rsplit('.', 1)[-1]}")
    if args.spec:
        print("\n" + Stack.from_spec(args.spec).describe())
    return 0


def cmd_eval(args) -> int:
    import json

    from .data import build_datasets, extract_pdfs
    from .evaluation import perplexity
    from .models import load_model, load_tokenizer

    model = load_model(args.model, args.stack)
    if args.adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, args.adapter)
    tok = load_tokenizer(args.model)
    bundle = build_datasets(extract_pdfs(args.data), tok, test_fraction=args.test_fraction, seed=args.seed)
    res = perplexity(model, bundle.test, context_length=args.context, stride=args.stride, batch_size=args.batch_size,
                     progress=True)
    print(json.dumps(res.to_dict(), indent=2))
    return 0


def cmd_data(args, rest: list[str]) -> int:
    from .data import inspect_main

    return inspect_main(rest)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from .runtime import configure_runtime

    configure_runtime()  # before anything initialises CUDA (the allocator setting is read then)
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["data", "inspect"]:
        return cmd_data(None, argv[2:])
    parser = argparse.ArgumentParser(prog="memfit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, helptext in (("plan", "largest micro-batch per stack on this device"),
                           ("bench", "compare several stacks side by side")):
        p = sub.add_parser(name, help=helptext)
        _plan_args(p)
        p.add_argument("--stack", nargs="+", default=["lora+q4+bf16+gc+ga8+adam8"])
        p.set_defaults(func=cmd_plan)
    p = sub.add_parser("stacks", help="list strategies; describe a spec")
    p.add_argument("spec", nargs="?")
    p.set_defaults(func=cmd_stacks)
    p = sub.add_parser("eval", help="perplexity and bits/byte on the test documents of a PDF folder")
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--adapter")
    p.add_argument("--stack", default="none")
    p.add_argument("--data", required=True, help="folder of PDFs")
    p.add_argument("--context", type=int, default=512)
    p.add_argument("--stride", type=int)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_eval)
    sub.add_parser("data", help="`memfit data inspect DIR`: extraction artefacts and split statistics")
    args = parser.parse_args(argv)
    from . import StackError
    from .data import DataError
    from .models import ModelError

    try:
        return args.func(args)
    except (StackError, ModelError, DataError, ValueError) as exc:  # user errors: the message says the fix
        print(f"memfit: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
