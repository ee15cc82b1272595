"""Issue 32 in one GPU call: the 4-bit path against the same stack with bf16 weights at equal micro-batches, where a
4-bit step's time goes (profile), and the HF recipe, seed and seed + cce in the same call for the ratios.

    python benchmarks/qlora_speed.py --memory-gib 79.19 --seq 512 2048 --phases pairs:300 profile:370 hf:440 \
        exact:545 --out $OUT

Phases run in the order --phases lists them, each as NAME:UNTIL (seconds since the start after which it starts no new
unit: a stack, a size); rows are written at once (NAME.json, NAME.md) and units left out are recorded as skipped, so
a call cut short still returns what it measured:
  pairs    each stack of --pairs loaded once, steady tokens/s (warm-up + timed steps of one shape, as the planner
           times) at --sizes-512 / --sizes-2048 per sequence length: the 4-bit stacks and their bf16 twins
  profile  torch.profiler of one eager 4-bit step per --profile stack (profile_q4.py): bnb's path and the fused one
  hf       the HF recipe's exact max and its tok/s there (hf_baseline.py), per sequence length
  exact    --exact stacks (the new path, seed, seed + cce): exact max micro-batch (memfit's planner, real OOMs) and
           steady tokens/s at that size
The card is capped at --memory-gib (set_per_process_memory_fraction) for every phase, as gpu_bench.py does.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

import memfit  # noqa: E402
from memfit.models import random_weights_dir  # noqa: E402
from memfit.plan.bench import free_device  # noqa: E402
from memfit.plan.choose import release  # noqa: E402
from memfit.plan.planner import plan, versions  # noqa: E402
from memfit.plan.probe import TimingMeter, run_probe, time_steps  # noqa: E402

FUSED = "lora+q4+q4fused+bf16"
# the fused path, its bf16 twin, bnb's own 4-bit path under the same stack (what the fused op changes); the same with
# checkpointing is a second call's: --pairs "lora+q4+q4fused+bf16+gc+cce+compile" "lora+bf16+gc+cce+compile"
PAIRS = [f"{FUSED}+cce+compile", "lora+bf16+cce+compile", "lora+q4+bf16+cce+compile"]
EXACT = [f"{FUSED}+cce+compile", "lora+q4+bf16+gc+paged_adam8", "lora+q4+bf16+gc+cce+paged_adam8"]
PROFILE = ["lora+q4+bf16+gc+cce", f"{FUSED}+gc+cce"]
TIMING_WARMUP, TIMING_STEPS = 1, 2  # fewer than the planner's 2 + 3: one call has to hold every row


def error_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}"


class Run:
    """The call's rows, its deadline and its output files."""

    def __init__(self, args, card: str, margin: float):
        self.args, self.start, self.margin, self.until = args, time.perf_counter(), margin, 0.0
        self.doc = {"card": card, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "versions": versions(),
                    "memory_gib": args.memory_gib, "config": args.config, "rows": [], "skipped": []}

    def may_start(self, what: str, needs: float = 30.0) -> bool:
        """Whether a unit expected to take `needs` seconds ends before the phase's deadline; the card's cap is set
        again here because the planner's and the HF search's meters release it when they finish."""
        torch.cuda.set_per_process_memory_fraction(1.0 - self.margin)
        if time.perf_counter() - self.start + needs <= self.until:
            return True
        self.doc["skipped"].append(what)
        self.save()
        return False

    def guarded(self, row: dict, measure) -> None:
        """Add `row` updated with measure()'s fields; anything but an OOM (answered inside the probes) becomes the
        row's error and the call goes on: one stack that fails (a kernel that cannot compile) costs only its rows."""
        try:
            row.update(measure())
        except Exception as exc:  # noqa: BLE001
            row["error"] = error_line(exc)
            free_device()
        self.add(row)

    def add(self, row: dict) -> None:
        row["at_s"] = round(time.perf_counter() - self.start)
        self.doc["rows"].append(row)
        print(json.dumps(row), flush=True)
        self.save()

    def save(self) -> None:
        out = Path(self.args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{self.args.name}.json").write_text(json.dumps(self.doc, indent=2))
        (out / f"{self.args.name}.md").write_text(markdown(self.doc))


def steady(model, stack, ctx, b: int, seq: int) -> dict:
    """Steady tokens/s at one shape and the peak of those steps (a size that does not fit: the OOM, no speed)."""
    optimizer = stack.make_optimizer(model, ctx, lr=0.0)
    try:
        torch.cuda.reset_peak_memory_stats()
        timing = time_steps(lambda: run_probe(model, optimizer, stack, ctx, TimingMeter(), b, seq), b,
                            warmup=TIMING_WARMUP, timed=TIMING_STEPS)
        return {"tokens_per_s": round(timing.tokens_per_s) if timing.tokens_per_s else None, "error": timing.error,
                "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2), "steps": timing.steps}
    finally:
        optimizer.state.clear()
        del optimizer
        free_device()


def loaded(run: Run, weights: str, spec: str, phase: str, unit: str):
    """(stack, model, ctx); None when the phase's deadline leaves no time for the unit (recorded as skipped) or the
    stack does not even load (an error row)."""
    if not run.may_start(f"{phase} {spec} {unit}", 60):
        return None
    try:
        stack = memfit.Stack.from_spec(spec)
        memfit.configure_runtime(stack)
        return stack, memfit.load_model(weights, stack), stack.context(torch.device("cuda", 0))
    except Exception as exc:  # noqa: BLE001
        free_device()
        run.add({"phase": phase, "stack": spec, "error": error_line(exc)})
        return None


def unload(model, stack) -> None:
    """What the planner's auto search does between candidates: process-wide effects undone, dynamo's cache reset."""
    release(model, stack)
    del model
    free_device()


def phase_pairs(run: Run, weights: str) -> None:
    for seq in run.args.seq:  # one sequence length at a time: a cut-short call still has whole pairs
        for spec in run.args.pairs:
            if (got := loaded(run, weights, spec, "pairs", f"seq {seq}")) is None:
                continue
            stack, model, ctx = got
            for b in run.args.sizes_512 if seq <= 512 else run.args.sizes_2048:
                if run.may_start(f"pairs {spec} {b}x{seq}", 15):
                    run.guarded({"phase": "pairs", "stack": spec, "seq": seq, "micro_batch": b},
                                lambda: steady(model, stack, ctx, b, seq))
            unload(model, stack)


def phase_profile(run: Run, weights: str) -> None:
    from profile_q4 import profile_stack

    for i, spec in enumerate(run.args.profile):
        if not run.may_start(f"profile {spec}", 45):
            continue

        def measure(i=i, spec=spec):
            summary, table = profile_stack(weights, spec, run.args.profile_batch, run.args.seq[0])
            (Path(run.args.out) / f"{run.args.name}_profile_{i}.txt").write_text(f"{spec}\n{table}\n")
            return summary

        run.guarded({"phase": "profile", "stack": spec}, measure)


def phase_hf(run: Run, weights: str) -> None:
    from hf_baseline import hf_exact, load_hf_recipe

    if not run.may_start("hf", 60):
        return
    recipe = load_hf_recipe(weights)
    for seq in run.args.seq:
        if run.may_start(f"hf {seq}", 30):
            def measure(seq=seq):
                res, _, _ = hf_exact(weights, seq, run.margin, loaded=recipe)
                return {"micro_batch": res.max_micro_batch, "peak_gib": res.peak_gib, "probes": len(res.probes),
                        "tokens_per_s": round(res.tokens_per_s) if res.tokens_per_s else None,
                        "search_s": round(res.search_seconds)}

            run.guarded({"phase": "hf", "stack": "HF recipe", "seq": seq}, measure)
    del recipe
    free_device()


def phase_exact(run: Run, weights: str) -> None:
    for spec in run.args.exact:
        if (got := loaded(run, weights, spec, "exact", "")) is None:
            continue
        stack, model, ctx = got
        for seq in run.args.seq:
            if not run.may_start(f"exact {spec} {seq}", 40):
                continue

            def measure(seq=seq):
                res = plan(model, stack, seq_len=seq, margin=run.margin, fresh=True)
                row = {"micro_batch": res.max_micro_batch, "probes": len(res.probes),
                       "search_s": round(res.search_seconds)}
                if res.max_micro_batch and run.may_start(f"exact {spec} {seq} timing", 20):
                    row.update(steady(model, stack, ctx, res.max_micro_batch, seq))
                return row

            run.guarded({"phase": "exact", "stack": spec, "seq": seq}, measure)
        unload(model, stack)


def markdown(doc: dict) -> str:
    """Same-call ratios: each 4-bit row against its bf16 twin (the spec without q4/q4fused) at the same size and
    sequence length, every row against the HF recipe's tok/s at its max for the same sequence length."""
    rows = [r for r in doc["rows"] if r.get("tokens_per_s") and r["phase"] != "profile"]
    hf = {r["seq"]: r["tokens_per_s"] for r in rows if r["phase"] == "hf"}
    speed = {(r["stack"], r["seq"], r["micro_batch"]): r["tokens_per_s"] for r in rows if r["phase"] == "pairs"}
    lines = [f"{doc['card']}, capped at {doc['memory_gib']} GiB; {doc['date']}; "
             + ", ".join(f"{k} {v}" for k, v in doc["versions"].items()), "",
             "| phase | stack | seq | micro-batch | tok/s | x bf16 twin | x HF | peak GiB |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        twin = speed.get((r["stack"].replace("+q4fused", "").replace("+q4", ""), r["seq"], r["micro_batch"]))
        vs_twin = f"{r['tokens_per_s'] / twin:.3f}" if twin and "+q4" in r["stack"] else "-"
        vs_hf = f"{r['tokens_per_s'] / hf[r['seq']]:.2f}" if r["seq"] in hf else "-"
        lines.append(f"| {r['phase']} | `{r['stack']}` | {r['seq']} | {r['micro_batch']} | {r['tokens_per_s']:,} | "
                     f"{vs_twin} | {vs_hf} | {r.get('peak_gib')} |")
    for r in (r for r in doc["rows"] if r["phase"] == "profile" and "families" in r):
        shares = ", ".join(f"{k} {v['share']:.1%} ({v['calls']} kernels)" for k, v in r["families"].items())
        lines.append(f"\nprofile `{r['stack']}` {r['batch']} x {r['seq']}: {r['device_us_total'] / 1e3:,.0f} ms of "
                     f"kernels; {shares}")
    for r in (r for r in doc["rows"] if r.get("error")):
        lines.append(f"\nerror: {r['phase']} `{r['stack']}` {r.get('seq', '')} {r.get('micro_batch', '')}: {r['error']}")
    if doc["skipped"]:
        lines.append("\nskipped (phase deadline): " + "; ".join(doc["skipped"]))
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="llama-3.2-3b")
    ap.add_argument("--seq", type=int, nargs="+", default=[512, 2048])
    ap.add_argument("--pairs", nargs="*", default=PAIRS)
    ap.add_argument("--sizes-512", type=int, nargs="+", default=[32, 64, 128])
    ap.add_argument("--sizes-2048", type=int, nargs="+", default=[8, 16, 32])  # the same tokens per step as at 512
    ap.add_argument("--profile", nargs="*", default=PROFILE)
    ap.add_argument("--profile-batch", type=int, default=32)
    ap.add_argument("--exact", nargs="*", default=EXACT)
    ap.add_argument("--phases", nargs="+", default=["pairs:300", "profile:370", "hf:440", "exact:545"],
                    help="NAME:UNTIL_S in running order (pairs, profile, hf, exact)")
    ap.add_argument("--memory-gib", type=float, default=79.19)
    ap.add_argument("--out", default=os.environ.get("OUT", "benchmarks/results"))
    ap.add_argument("--name", default="qlora_speed")
    args = ap.parse_args()

    memfit.configure_runtime()  # allocator and SDPA settings, for memfit's stacks and the HF recipe alike
    total = torch.cuda.get_device_properties(0).total_memory / 2**30
    margin = max(0.0, 1 - args.memory_gib / total)
    run = Run(args, torch.cuda.get_device_name(0), margin)
    torch.cuda.set_per_process_memory_fraction(1.0 - margin)
    weights = str(random_weights_dir(memfit.load_config(args.config), torch.bfloat16, torch.device("cuda", 0)))
    phases = {"pairs": lambda: phase_pairs(run, weights), "profile": lambda: phase_profile(run, weights),
              "hf": lambda: phase_hf(run, weights), "exact": lambda: phase_exact(run, weights)}
    for item in args.phases:
        name, _, until = item.partition(":")
        run.until = float(until or 545)
        phases[name]()
    run.save()
    print(markdown(run.doc))


if __name__ == "__main__":
    main()
