"""Check `memfit plan --auto` against brute force: every candidate of its exact level, none pruned, timed at the size
it would train at for the target effective batch. Does the search's winner come out fastest?

    python benchmarks/auto_sweep.py --seq 512 --target 64 --memory-gib 79.19 --deadline-s 540 --out $OUT --name sweep

Per candidate: the largest micro-batch m = ceil(T / k) that fits (a bisection over those sizes, split first at the
analytic model's guess), trained in k = ceil(T / m) steps, then the planner's own steady timing of that one shape
(memfit.plan.probe.time_steps: warm-up steps, then timed ones). Candidates run fastest-declared first, so a
deadline cuts the ones the search would also have tried last; the JSON is rewritten after each.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import torch

import memfit
from memfit.models import load_model, random_weights_dir
from memfit.plan.auto import candidate_classes, enumerate_candidates, environment
from memfit.plan.bench import free_device
from memfit.plan.choose import release
from memfit.plan.memory import estimate
from memfit.plan.planner import versions
from memfit.plan.probe import CudaMeter, TimingMeter, run_probe, time_steps


def sweep_one(weights: str, stack, config, seq: int, target: int, margin: float) -> dict:
    memfit.configure_runtime(stack)
    net = load_model(weights, stack)
    ctx = stack.context(torch.device("cuda", 0))
    opt = stack.make_optimizer(net, ctx, lr=0.0)
    meter = CudaMeter(ctx.device, margin).__enter__()  # caps device memory
    t0 = time.perf_counter()
    row = {"stack": stack.spec, "tries": []}
    try:
        pred = estimate(stack, config, seq, ctx).max_micro_batch(meter.budget)
        sizes = sorted({math.ceil(target / k) for k in range(1, target + 1)})  # the micro-batches a k can give
        fits_at: dict[int, bool] = {}

        def fits(i: int) -> bool:
            m = sizes[i]
            if m not in fits_at:
                p = run_probe(net, opt, stack, ctx, meter, m, seq)
                fits_at[m] = p.fits
                row["tries"].append({"micro_batch": m, "fits": p.fits,
                                     "peak_gib": p.peak_bytes / 2**30 if p.peak_bytes else None})
            return fits_at[m]

        # bisection over the sizes for the largest that fits, split first at the analytic guess
        lo, hi = -1, len(sizes)  # sizes[lo] fits (-1: none yet), sizes[hi] does not (len: past the end)
        mid = max(0, sum(1 for m in sizes if m <= pred) - 1)
        while hi - lo > 1:
            if fits(mid):
                lo = mid
            else:
                hi = mid
            mid = (lo + hi) // 2
        if lo >= 0:
            m = sizes[lo]
            k = math.ceil(target / m)
            t = time_steps(lambda: run_probe(net, opt, stack, ctx, TimingMeter(), m, seq), m)
            row |= {"micro_batch": m, "grad_accum": k, "tokens_per_s": t.tokens_per_s, "timing_steps": t.steps,
                    "error": t.error}
    except Exception as exc:  # noqa: BLE001 - a broken combination is a row, the sweep goes on
        row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    finally:
        meter.__exit__(None, None, None)  # lifts the cap
        opt.state.clear()
        release(net, stack)
        del net, opt
        free_device()
    row["seconds"] = round(time.perf_counter() - t0, 1)
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="llama-3.2-3b")
    ap.add_argument("--base", default="lora+bf16")
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--target", type=int, default=64)
    ap.add_argument("--level", type=int, default=0, help="lossiness level to sweep (0: exact)")
    ap.add_argument("--memory-gib", type=float)
    ap.add_argument("--deadline-s", type=float, default=540)
    ap.add_argument("--out", default=os.environ.get("OUT", "benchmarks/results"))
    ap.add_argument("--name", default="auto_sweep")
    args = ap.parse_args()
    start = time.perf_counter()
    memfit.configure_runtime()
    total = torch.cuda.get_device_properties(0).total_memory / 2**30
    margin = max(0.0, 1 - args.memory_gib / total) if args.memory_gib else 0.0
    config = memfit.load_config(args.config)
    weights = str(random_weights_dir(config, torch.bfloat16, torch.device("cuda", 0)))
    cands = [c for c in enumerate_candidates(memfit.Stack.coerce(args.base), candidate_classes(environment(True)))
             if c.lossiness == args.level]
    cands.sort(key=lambda c: (c.prior_cost, len(c.added)))
    rows: list[dict] = []
    out = Path(args.out, f"{args.name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    for c in cands:
        if time.perf_counter() - start > args.deadline_s:
            rows.append({"stack": c.stack.spec, "error": "not run: sweep deadline"})
        else:
            rows.append(sweep_one(weights, c.stack, config, args.seq, args.target, margin))
            print(json.dumps(rows[-1]), flush=True)
        out.write_text(json.dumps({"card": torch.cuda.get_device_name(0), "memory_gib": args.memory_gib,
                                   "seq_len": args.seq, "target_effective_batch": args.target, "base": args.base,
                                   "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                   "versions": versions(), "rows": rows}, indent=2))
    timed = sorted((r for r in rows if r.get("tokens_per_s")), key=lambda r: -r["tokens_per_s"])
    for r in timed:
        print(f"{r['stack']:45s} {r['micro_batch']:4d} x {r['grad_accum']}  {r['tokens_per_s']:9,.0f} tok/s")


if __name__ == "__main__":
    main()
