"""The capacity commands. They differ in purpose:
  plan      one stack: its exact max micro-batch and accumulation on this device (or --auto: choose the stack;
            --max-seq-len: the longest context that trains)
  bench     several stacks side by side: max micro-batch, peak memory and tokens/s as a table, Markdown and PNG
  estimate  the analytic memory model only (memfit/plan/memory.py): every term, the total and the predicted max
            micro-batch, from a config alone; no weights are loaded and nothing is probed
  stacks    the registered strategies, one strategy's arguments, or a spec / YAML file resolved"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..recipes.limits import CPU_BUDGET_GIB, MARGIN, MAX_COUNT
from ..strategies.defaults import AUTO_BASE, BENCH_STACKS, PLAN_STACK
from .options import EffectiveDefaults, bounded, type_name

HELP = EffectiveDefaults  # every subparser shows each option's default
# every numeric flag is checked at parse time, before any model is loaded (bounds: memfit/recipes/limits.py)
COUNT = bounded(int, 1, MAX_COUNT)
SEQ_LEN = bounded(int, 8, MAX_COUNT)
FRACTION = bounded(float, *MARGIN, high_open=True)
GIB = bounded(float, *CPU_BUDGET_GIB)
BUDGET = bounded(float, 0.0, CPU_BUDGET_GIB[1])


def _model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--model", default="smollm2-135m", help="the embedded default, a local dir or a Hub id")
    g.add_argument("--model-config", "--architecture", dest="model_config",
                   help="a shipped architecture (see `memfit estimate --help`: llama, qwen2.5, qwen3, mistral, gemma-2, "
                        "phi-3.5) or a config JSON; implies --random-init (--architecture is the same flag)")
    p.add_argument("--random-init", action="store_true", help="random weights (memory/speed do not depend on them)")


def _search_args(p: argparse.ArgumentParser) -> None:
    """What plan and bench share: the probe search and its report."""
    _model_args(p)
    p.add_argument("--margin", type=FRACTION, default=0.03, help="fraction of device memory kept free, in [0, 1)")
    p.add_argument("--target-effective-batch", type=COUNT, help="sequences per optimizer step; sets the accumulation "
                                                               "(default: the stack's own 'ga')")
    p.add_argument("--eval-batch-size", type=COUNT, help="also fit an evaluation forward of this many sequences "
                                                         "(default: none)")
    p.add_argument("--max-micro-batch", type=COUNT, default=8192, help="search limit (on CPU it bounds probe time)")
    p.add_argument("--fresh", action="store_true", help="ignore cached plans and probe again")
    p.add_argument("--cpu-budget-gib", type=GIB, help=f"CPU only (required there): simulated device memory, "
                                                     f"1 MiB..{CPU_BUDGET_GIB[1]:g} GiB")
    p.add_argument("--out", help="directory for the JSON/Markdown/PNG report")


def add_commands(sub) -> None:
    p = sub.add_parser("plan", formatter_class=HELP, help="one stack: its exact max micro-batch and accumulation",
                       description="Probe one stack on this device for its exact largest micro-batch (and the "
                                   "accumulation that reaches the effective batch); or choose a stack (--auto) or "
                                   "find the longest context (--max-seq-len). `memfit bench` compares stacks.")
    _search_args(p)
    p.add_argument("--stack", default=PLAN_STACK, help="memory strategies: a spec or a stack YAML file "
                                                          "(--auto: the base the search builds on)")
    p.add_argument("--seq-len", type=SEQ_LEN, default=512, help="training sequence length")
    p.add_argument("--name", default="plan", help="report file name under --out")
    p.add_argument("--json", help="write the machine-readable result here")
    g = p.add_argument_group("choosing the stack or the context (memfit.plan.auto, memfit.plan.seq_len)")
    g.add_argument("--auto", action="store_true", help="choose the fastest exact-first stack on top of --stack "
                                                       "(the base, e.g. lora+bf16) for --target-effective-batch")
    g.add_argument("--probe-budget", type=COUNT, default=60, help="--auto: probes over all stacks")
    g.add_argument("--max-seq-len", action="store_true", help="the longest sequence --stack trains")
    g.add_argument("--micro-batch", type=COUNT, default=1, help="--max-seq-len: at this micro-batch")
    g.add_argument("--rope-scaling", metavar="TYPE:factor=F", help="--max-seq-len: search past the model's "
                   "max_position_embeddings with this RoPE scaling, as transformers configures it (yarn:factor=4, "
                   "llama3:factor=32, linear:factor=2, or a rope_parameters JSON object); without it the search "
                   "stops at the native maximum")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("bench", formatter_class=HELP, help="several stacks side by side (table, Markdown, PNG)",
                       description="Plan several stacks (and sequence lengths) side by side, one model load per "
                                   "stack: max micro-batch, peak memory and tokens/s per stack.")
    _search_args(p)
    p.add_argument("--stack", nargs="+", default=BENCH_STACKS, help="the stacks to compare")
    p.add_argument("--seq-len", type=SEQ_LEN, nargs="+", default=[512], help="sequence lengths, each planned per stack")
    p.add_argument("--name", default="bench", help="report file name under --out")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("estimate", formatter_class=HELP, help="the analytic memory breakdown, no weights loaded",
                       description="The analytic memory model's terms (who contributes each), the total, and the max "
                                   "micro-batch it predicts for a budget, from a model config or a run recipe; "
                                   "reads the config only. `memfit plan` measures instead.")
    recipe_default = dict(default=argparse.SUPPRESS)  # unset flags leave the recipe's value; the help says so
    g = p.add_mutually_exclusive_group()
    g.add_argument("--model", **recipe_default, help="the embedded default, a local dir or a Hub id (default: the "
                                                     "recipe's, else smollm2-135m)")
    g.add_argument("--model-config", "--architecture", dest="model_config", **recipe_default,
                   help="a shipped architecture or a config JSON (default: the recipe's architecture; --architecture "
                        "is the same flag)")
    p.add_argument("--config", help="a run recipe (recipes/*.yaml or a name): its model, stack, seq_len, effective "
                                    "batch and CPU budget; the flags below override it")
    p.add_argument("--stack", **recipe_default, help=f"memory strategies (default: the recipe's, else "
                                                     f"{PLAN_STACK})")
    p.add_argument("--seq-len", **recipe_default, type=SEQ_LEN, help="sequence length (default: the recipe's, else 512)")
    p.add_argument("--micro-batch", **recipe_default, type=COUNT, help="micro-batch of the breakdown (default: the "
                                                                     "predicted max with a budget, else 1)")
    p.add_argument("--budget-gib", **recipe_default, type=BUDGET, help="device memory to predict the max micro-batch "
                                                                      "for (default: this GPU less --margin; on CPU "
                                                                      "the recipe's cpu_budget_gib)")
    p.add_argument("--margin", **recipe_default, type=FRACTION, help="fraction of a GPU's memory kept free (default: "
                                                                  "the recipe's, else 0.03)")
    p.add_argument("--target-effective-batch", **recipe_default, type=COUNT, help="sets the accumulation (default: "
                                                                                "the recipe's, else the stack's 'ga')")
    p.add_argument("--num-processes", type=COUNT, default=1, help="data-parallel processes (for the accumulation)")
    p.add_argument("--device", **recipe_default, choices=["cpu", "cuda"], help="the device the stack is estimated "
                                                                               "for (default: cuda with a GPU)")
    p.add_argument("--json", help="also write the estimate as JSON here")
    p.set_defaults(func=cmd_estimate)

    p = sub.add_parser("stacks", formatter_class=HELP, help="list strategies; a strategy's arguments; resolve a "
                                                            "spec or YAML file",
                       description="No argument: every registered strategy (plugins included). A strategy name: "
                                   "its arguments with types and defaults. A spec, a stack YAML file or a run "
                                   "recipe: the resolved stack.")
    p.add_argument("spec", nargs="?", help="a strategy name, a spec (lora+gc+ga8), a stack YAML or a recipe")
    p.set_defaults(func=cmd_stacks)


def _model(args) -> tuple[str, bool]:
    return args.model_config or args.model, bool(args.model_config) or args.random_init


def _check_inputs(args, stacks: list[str], seq_lens: list[int]) -> None:
    """Mistakes in the flags are reported before the (slow) model load. A CPU run without --cpu-budget-gib is
    refused by bench() and memfit.plan.choose themselves, also before they load anything."""
    from ..core.stack import Stack
    from ..plan.planner import check_seq_lens

    check_seq_lens(seq_lens)
    if getattr(args, "rope_scaling", None):
        from ..plan.rope import parse_rope_scaling

        if not args.max_seq_len:
            raise ValueError("--rope-scaling applies to --max-seq-len (the longest-context search): add it or drop "
                             "--rope-scaling")
        args.rope_scaling = parse_rope_scaling(args.rope_scaling)
    if getattr(args, "auto", False) and not args.target_effective_batch:
        raise ValueError("--auto needs --target-effective-batch N (and one base --stack, e.g. lora+bf16)")
    for spec in stacks:
        Stack.coerce(spec)


def cmd_plan(args) -> int:
    from ..launch.distributed import join_launch
    from ..plan.bench import bench

    _check_inputs(args, [args.stack], [] if args.max_seq_len else [args.seq_len])
    launched = join_launch()  # under `accelerate launch`: one group, each rank on its device, one report
    model, random_init = _model(args)
    if args.auto or args.max_seq_len:
        return _cmd_choose(args, model, random_init)
    [res] = bench(model, [args.stack], [args.seq_len], random_init=random_init, margin=args.margin,
                  eval_batch_size=args.eval_batch_size or 0, target_effective_batch=args.target_effective_batch,
                  fresh=args.fresh, cpu_budget_gib=args.cpu_budget_gib, limit=args.max_micro_batch,
                  out_dir=args.out, name=args.name, title=f"memfit plan: {model}, {args.stack} at seq {args.seq_len}",
                  accelerator_for=_launch_accelerator if launched else None)
    capped = " (the --max-micro-batch cap)" if res.max_micro_batch >= args.max_micro_batch else ""
    print(f"plan: {res.stack} at seq {res.seq_len}: max micro-batch {res.max_micro_batch}{capped}; trains at "
          f"{res.micro_batch} x accumulation {res.grad_accum} x {res.num_processes} processes = effective batch "
          f"{res.effective_batch} "
          f"(peak {res.peak_gib or 0:.3g} GiB of {res.budget_gib:.3g} GiB; analytic prediction {res.predicted_max}"
          f"{prediction_error(res, bool(capped))})")
    if args.json and (launched is None or launched.is_main_process):
        dump_json(args.json, res.to_dict())
    return 0 if res.max_micro_batch else 1


def prediction_error(res, capped: bool) -> str:
    """The analytic prediction's error against the maximum the probes found; none when the search stopped at the
    --max-micro-batch cap (the true maximum is unknown there)."""
    if capped:
        return ", its error unknown: the search stopped at the cap"
    if res.predicted_error_pct is None:
        return ""
    return f", {res.predicted_error_pct:+.0f} % against the found maximum"


def _cmd_choose(args, model: str, random_init: bool) -> int:
    from ..plan.choose import choose_stack, longest_context

    common = dict(random_init=random_init, margin=args.margin, eval_batch_size=args.eval_batch_size or 0,
                  cpu_budget_gib=args.cpu_budget_gib, fresh=args.fresh)
    if args.max_seq_len:
        longest_context(model, [args.stack], micro_batch=args.micro_batch, json_path=args.json,
                        rope_scaling=args.rope_scaling, **common)
        return 0
    stack = args.stack
    if stack is PLAN_STACK:  # not typed: the base of the search, not a finished (lossy) stack
        import torch

        stack = AUTO_BASE["cuda" if torch.cuda.is_available() else "cpu"]
    res = choose_stack(model, stack, seq_len=args.seq_len, target_effective_batch=args.target_effective_batch,
                       probe_budget=args.probe_budget, out_dir=args.out, json_path=args.json,
                       name=args.name if args.name != "plan" else "auto", **common)
    return 0 if res.winner else 1


def _launch_accelerator(stack):
    """The Accelerator `memfit train` builds under this launch: the planner probes through its engine."""
    from ..training.loop import make_accelerator

    return make_accelerator(stack, 1)


def cmd_bench(args) -> int:
    from ..plan.bench import bench

    _check_inputs(args, args.stack, args.seq_len)
    model, random_init = _model(args)
    rows = bench(model, args.stack, args.seq_len, random_init=random_init, margin=args.margin,
                 eval_batch_size=args.eval_batch_size or 0, target_effective_batch=args.target_effective_batch,
                 fresh=args.fresh, cpu_budget_gib=args.cpu_budget_gib, limit=args.max_micro_batch,
                 out_dir=args.out, name=args.name, title=f"memfit bench: {model}, {len(args.stack)} stacks")
    return 0 if rows else 1


def cmd_estimate(args) -> int:
    from .estimate import estimate_from_args

    return estimate_from_args(args)


def cmd_stacks(args) -> int:
    """No argument: every strategy. A strategy name: its arguments. A spec or YAML file: the resolved stack."""
    from .. import Stack, available_strategies

    strategies = available_strategies()
    if args.spec not in strategies:  # nothing or a spec/file: every strategy (plugins included), then it resolved
        for name, cls in strategies.items():
            print(f"{name:<16} {cls.__module__.rsplit('.', 1)[-1]}")
        if not args.spec:
            return 0
    if args.spec in strategies:
        cls = strategies[args.spec]
        print(f"{args.spec}: {(cls.__doc__ or '').strip().splitlines()[0] if cls.__doc__ else ''}")
        for field, info in cls.model_fields.items():
            default = info.get_default(call_default_factory=True)
            print(f"  {field:<22} {type_name(info.annotation):<18} default {default!r}"
                  + (f"  {info.description}" if info.description else ""))
        return 0
    spec = _recipe_stack(args.spec) or args.spec
    stack = Stack.coerce(spec)
    print(f"\nresolved stack: {stack.spec}\n{stack.describe()}")
    return 0


def _recipe_stack(path: str):
    """A run recipe (a YAML mapping with a `stack:` spec rather than `strategies:`) names its stack: resolve that."""
    from .options import YAML_ERRORS, strict_yaml

    if not path.endswith((".yaml", ".yml")) or not Path(path).is_file():
        return None
    try:
        data = strict_yaml(Path(path).read_text())
    except YAML_ERRORS:
        return None  # Stack.from_yaml reports it, naming the file
    if isinstance(data, dict) and "strategies" not in data and isinstance(data.get("stack"), str):
        return data["stack"]
    return None


def dump_json(path: str, data) -> None:
    from ..core.files import atomic_write_json

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, data, default=str)
