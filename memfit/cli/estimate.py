"""`memfit estimate`: the analytic memory model (memfit/plan/memory.py) from a model config or a run recipe.

Only configs are read: no weights are loaded, no model is built, nothing is probed, so it answers in seconds for an
8B model on a laptop. What it prints is a prediction; `memfit plan` measures the real boundary. `--device` matters:
the device's own terms (memfit/plan/device_terms.py: the CUDA context and workspaces on cuda; no workspace, host =
device and the process's runtime on cpu) join the table, and the largest term is named with the registered strategy
that lowers it most."""

from __future__ import annotations


from typing import Any

DEFAULT_SEQ_LEN = 512


def _recipe_settings(args, device: str) -> dict[str, Any]:
    """model, stack, seq_len, effective batch and budget of a run recipe, as the run would resolve them here."""
    if not args.config:
        return {}
    from ..recipes.stack_choice import AUTO_BASE
    from .train import parse_config

    cfg = parse_config([str(args.config)], prog="memfit estimate --config").resolved(device)
    stack, notes = cfg.stack, []
    if str(stack).strip().lower() == "auto":  # chosen by probes at run time: the analytic model sees its base
        stack = AUTO_BASE[device]
        notes.append(f"stack 'auto' is chosen by the planner at run time; this estimates its base {stack}")
    return dict(model=cfg.model.source, stack=stack, seq_len=cfg.data.seq_len,
                target_effective_batch=cfg.plan.target_effective_batch, margin=cfg.plan.margin,
                cpu_budget_gib=cfg.plan.cpu_budget_gib if device == "cpu" else None, notes=notes)


def dominating_term(stack, config, seq_len: int, ctx, est, micro: int) -> tuple[str, float, str]:
    """(the largest device term at `micro`, its GiB, which registered strategy added to the stack lowers it most).
    Every strategy the registry holds is tried on the analytic model, so plugins take part and no name is assumed."""
    from .. import available_strategies
    from ..core.stack import Stack, StackError
    from ..plan.device_terms import device_estimate as estimate

    device_terms = {k: v for k, v in est.breakdown(micro).items() if k != "total" and not k.startswith("host:")}
    term = max(device_terms, key=device_terms.get)
    best = None
    for name in available_strategies():
        if stack.get(name) is not None:
            continue
        try:
            trial = Stack([*stack.strategies, *Stack.from_dict([{"name": name}]).strategies])
            lowered = estimate(trial, config, seq_len, ctx).breakdown(micro).get(term, 0.0)
        except (StackError, ValueError, TypeError, KeyError):  # cannot join this stack (or needs arguments)
            continue
        if lowered < device_terms[term] * 0.99 and (best is None or lowered < best[1]):
            best = (name, lowered)
    remedy = (f"{best[0]} removes it" if best and best[1] < 0.05 * device_terms[term] else
              f"{best[0]} lowers it to {best[1]:.2f} GiB" if best else "no strategy added to this stack lowers it")
    return term, device_terms[term], remedy


def _budget_gib(given: dict[str, Any], recipe: dict[str, Any], device: str, margin: float):
    if given.get("budget_gib"):
        return given.get("budget_gib"), "--budget-gib"
    import torch

    if device == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_properties(0).total_memory * (1 - margin) / 2**30, torch.cuda.get_device_name(0)
    if recipe.get("cpu_budget_gib"):
        return recipe["cpu_budget_gib"], "the recipe's cpu_budget_gib"
    return None, ""


def estimate_from_args(args) -> int:
    import torch

    from ..core.stack import Stack
    from ..models import EMBEDDED
    from ..plan.device_terms import PROCESS_RUNTIME_GIB, device_estimate
    from ..plan.memory import GiB
    from ..plan.planner import check_seq_lens, training_size
    from ..plan.report import format_estimate
    from ..recipes.preflight import model_config_without_weights
    from ..recipes.stack_choice import with_accumulation
    from ..strategies.defaults import PLAN_STACK
    from .plan import dump_json

    given = vars(args)  # the estimate's flags default to SUPPRESS: absent unless typed, so the recipe's value stays
    device = given.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
    recipe = _recipe_settings(args, device)
    model = given.get("model_config") or given.get("model") or recipe.get("model", EMBEDDED)
    seq_len = given.get("seq_len") or recipe.get("seq_len") or DEFAULT_SEQ_LEN
    target = given.get("target_effective_batch") or recipe.get("target_effective_batch")
    spec = given.get("stack") or recipe.get("stack") or PLAN_STACK
    stack = with_accumulation(spec, target) if recipe and not given.get("stack") else Stack.coerce(spec)
    margin = given["margin"] if "margin" in given else recipe.get("margin", 0.03)
    budget_gib, budget_from = _budget_gib(given, recipe, device, margin)
    config, note = model_config_without_weights(model)
    check_seq_lens([seq_len], getattr(config, "max_position_embeddings", None))
    # an explicit device index: Stack.context would ask CUDA for the current device, and there may be none here
    ctx = stack.context(torch.device("cuda", 0) if device == "cuda" else "cpu", num_processes=args.num_processes)
    est = device_estimate(stack, config, seq_len, ctx)
    predicted = est.max_micro_batch(budget_gib * GiB) if budget_gib else None
    micro = given.get("micro_batch") or predicted or 1
    print(f"memfit estimate: {model}, stack {stack.spec}, seq {seq_len}, {device} (analytic; no weights loaded)")
    for line in [note, *recipe.get("notes", [])]:
        if line:
            print(f"note: {line}")
    print(format_estimate(est, micro))
    total = est.breakdown(micro)["total"]
    term, gib, remedy = dominating_term(stack, config, seq_len, ctx, est, micro)
    share = 100 * gib / total if total else 0.0
    compute = str(ctx.compute_dtype).removeprefix("torch.")
    print(f"{device}: compute in {compute}" + (f"; process RSS about {total + PROCESS_RUNTIME_GIB:.2f} GiB (the total "
          f"+ {PROCESS_RUNTIME_GIB} GiB of interpreter and libraries)" if device == "cpu" else
          "; the CUDA context sits outside torch's allocator (the planner's margin covers it)"))
    print(f"dominated by {term}: {share:.0f} % of {total:.2f} GiB at micro-batch {micro}; {remedy}")
    out: dict[str, Any] = {"model": model, "stack": stack.spec, "seq_len": seq_len, "device": device,
                           "compute_dtype": compute, "micro_batch": micro, "breakdown_gib": est.breakdown(micro),
                           "estimate": est.to_dict(), "dominating_term": term, "dominating_share_pct": share,
                           "remedy": remedy}
    if device == "cpu":
        out["process_rss_gib"] = total + PROCESS_RUNTIME_GIB
    if budget_gib:
        # the size a run would train at: for a target, the fewest steps and the smallest micro-batch reaching it
        train_micro, accum = training_size(stack, max(predicted, 1), args.num_processes, target)
        print(f"budget {budget_gib:.2f} GiB ({budget_from}): predicted max micro-batch {predicted}; trains at "
              f"{train_micro} x accumulation {accum} x {args.num_processes} processes = effective batch "
              f"{train_micro * accum * args.num_processes}")
        out.update(budget_gib=budget_gib, predicted_max_micro_batch=predicted, train_micro_batch=train_micro,
                   grad_accum=accum)
        if not predicted:
            print("not one sequence fits by the analytic model: lower --seq-len, add 'gc'/'q4', or raise the budget")
    else:
        print("no budget: pass --budget-gib N for the max micro-batch the model predicts")
    if args.json:
        dump_json(args.json, out)
    return 0
