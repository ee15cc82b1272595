"""`memfit` console script: train, plan, bench, eval, stacks, data inspect (`memfit COMMAND --help`)."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from .options import type_name


DEFAULT_PLAN_STACKS = ["lora+q4+bf16+gc+ga8+adam8"]


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
    g = p.add_argument_group("choosing the stack and the context (memfit.plan.auto, memfit.plan.seq_len)")
    g.add_argument("--auto", action="store_true", help="choose the fastest exact-first stack on top of --stack "
                                                       "(the base, e.g. lora+bf16) for --target-effective-batch")
    g.add_argument("--probe-budget", type=int, default=60, help="--auto: probes over all stacks")
    g.add_argument("--max-seq-len", action="store_true", help="per --stack, the longest sequence that trains")
    g.add_argument("--micro-batch", type=int, default=1, help="--max-seq-len: at this micro-batch")
    g.add_argument("--json", help="--auto/--max-seq-len: write the machine-readable result here")


def cmd_plan(args) -> int:
    from ..launch.distributed import join_launch
    from ..plan.bench import bench

    model = args.model_config or args.model
    launched = join_launch()  # under `accelerate launch`: one group, each rank on its device, one report
    if args.auto or args.max_seq_len:
        return _cmd_choose(args, model)
    bench(model, args.stack, args.seq_len, random_init=bool(args.model_config) or args.random_init,
          margin=args.margin, eval_batch_size=args.eval_batch_size, target_effective_batch=args.target_effective_batch,
          fresh=args.fresh, cpu_budget_gib=args.cpu_budget_gib, out_dir=args.out,
          name=args.name or args.command, accelerator_for=_launch_accelerator if launched else None)
    return 0


def _launch_accelerator(stack):
    """The Accelerator `memfit train` would build under this launch: the planner probes through its engine."""
    from ..training.loop import make_accelerator

    return make_accelerator(stack, 1)


def _cmd_choose(args, model: str) -> int:
    from ..plan.choose import choose_stack, longest_context

    common = dict(random_init=bool(args.model_config) or args.random_init, margin=args.margin,
                  eval_batch_size=args.eval_batch_size, cpu_budget_gib=args.cpu_budget_gib, fresh=args.fresh)
    if args.auto and args.stack is DEFAULT_PLAN_STACKS:  # the base of the search, not a finished (lossy) stack
        import torch

        args.stack = ["lora+bf16" if torch.cuda.is_available() else "lora"]
    if args.max_seq_len:
        longest_context(model, args.stack, micro_batch=args.micro_batch, json_path=args.json, **common)
        return 0
    if not args.target_effective_batch or len(args.seq_len) != 1 or len(args.stack) != 1:
        raise ValueError("--auto needs --target-effective-batch N, one --seq-len L and one base --stack "
                         "(e.g. --stack lora+bf16)")
    res = choose_stack(model, args.stack[0], seq_len=args.seq_len[0], target_effective_batch=args.target_effective_batch,
                       probe_budget=args.probe_budget, out_dir=args.out, json_path=args.json,
                       name=args.name or "auto", **common)
    return 0 if res.winner else 1


def cmd_stacks(args) -> int:
    """No argument: every strategy. A strategy name: its arguments. A spec or YAML file: the resolved stack."""
    from .. import Stack, available_strategies

    strategies = available_strategies()
    if args.spec not in strategies:  # nothing or a spec: every strategy (plugins included), then the spec resolved
        for name, cls in strategies.items():
            print(f"{name:<16} {cls.__module__.rsplit('.', 1)[-1]}")
        if not args.spec:
            return 0
    if args.spec in strategies:
        cls = strategies[args.spec]
        print(f"{args.spec}: {(cls.__doc__ or '').strip().splitlines()[0] if cls.__doc__ else ''}")
        for field, info in cls.model_fields.items():
            print(f"  {field:<22} {type_name(info.annotation):<18} default {info.get_default(call_default_factory=True)!r}"
                  + (f"  {info.description}" if info.description else ""))
        return 0
    print("\n" + Stack.coerce(args.spec).describe())
    return 0


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
    for name, helptext in (("plan", "largest micro-batch per stack on this device"),
                           ("bench", "compare several stacks side by side")):
        p = sub.add_parser(name, help=helptext)
        _plan_args(p)
        p.add_argument("--stack", nargs="+", default=DEFAULT_PLAN_STACKS)
        p.set_defaults(func=cmd_plan)
    p = sub.add_parser("stacks", help="list strategies; describe a spec")
    p.add_argument("spec", nargs="?")
    p.set_defaults(func=cmd_stacks)
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
