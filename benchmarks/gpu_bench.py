"""One GPU call: HF-recipe baseline and memfit stacks on Llama-3.2-3B (random weights), side by side.

    python benchmarks/gpu_bench.py --seq 512 --hf --stacks "lora+q4+bf16+gc+paged_adam8" ... --out $OUT --name b512

Writes NAME.json / NAME.md / NAME.png (memfit.plan.report) plus NAME_extra.json (finder runs, training check).
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
from memfit.plan.bench import free_device  # noqa: E402
from memfit.models import random_weights_dir  # noqa: E402
from memfit.plan.planner import plan  # noqa: E402
from memfit.plan.report import format_table, write_report  # noqa: E402


def train_check(weights: str, spec: str, seq: int, steps: int, cap_margin: float = 0.0) -> dict:
    """Plan (with the default safety margin), then train `steps` optimizer steps at that size: no OOM allowed."""
    stack = memfit.Stack.from_spec(spec)
    memfit.configure_runtime(stack)
    model = memfit.load_model(weights, stack)
    p = plan(model, stack, seq_len=seq, margin=cap_margin + 0.03, fresh=True)
    if cap_margin:  # keep the training run under the same cap as the plan
        torch.cuda.set_per_process_memory_fraction(1 - cap_margin - 0.03)
    g = torch.Generator().manual_seed(0)
    rows = [{"input_ids": r, "labels": r} for r in
            torch.randint(0, model.config.vocab_size, (p.max_micro_batch * p.grad_accum * steps, seq), generator=g).tolist()]
    cfg = memfit.TrainConfig(micro_batch=p.max_micro_batch, max_steps=steps, lr=1e-4, progress=False)
    t = time.perf_counter()
    res = memfit.train(model, stack, rows, cfg)
    out = {"stack": spec, "seq_len": seq, "planned_micro_batch": p.max_micro_batch, "grad_accum": p.grad_accum,
           "steps": res.steps, "tokens_per_s": res.tokens_per_s, "peak_gib": res.memory.get("peak_gib"),
           "seconds": time.perf_counter() - t, "loss_first": res.losses[0], "loss_last": res.losses[-1]}
    del model
    free_device()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="llama-3.2-3b")
    ap.add_argument("--seq", type=int, nargs="+", default=[512])
    ap.add_argument("--stacks", nargs="*", default=[])
    ap.add_argument("--hf", action="store_true", help="HF recipe baseline, exact search")
    ap.add_argument("--hf-liger", action="store_true", help="the HF recipe with Liger's kernels (run it alone: it "
                    "patches transformers process-wide)")
    ap.add_argument("--hf-max-seq", action="store_true", help="also the recipe's longest context at micro-batch 1")
    ap.add_argument("--finder", action="store_true", help="also accelerate.find_executable_batch_size on it")
    ap.add_argument("--train", help="stack spec to train --train-steps steps at its planned size")
    ap.add_argument("--train-steps", type=int, default=50)
    ap.add_argument("--train-seq", type=int, help="sequence length of the --train run (default: the first --seq)")
    ap.add_argument("--memory-gib", type=float, help="cap the card at this many GiB (compare an H200 with an H100)")
    ap.add_argument("--out", default=os.environ.get("OUT", "benchmarks/results"))
    ap.add_argument("--name", default="bench")
    args = ap.parse_args()

    t0 = time.perf_counter()
    memfit.configure_runtime()  # allocator and SDPA settings, for memfit's stacks and the HF baseline alike
    total = torch.cuda.get_device_properties(0).total_memory / 2**30
    margin = max(0.0, 1 - args.memory_gib / total) if args.memory_gib else 0.0
    config = memfit.load_config(args.config)
    weights = str(random_weights_dir(config, torch.bfloat16, torch.device("cuda", 0)))
    print(f"random weights ready in {time.perf_counter() - t0:.0f} s: {weights}", flush=True)
    card = torch.cuda.get_device_name(0) + (f" capped at {args.memory_gib} GiB" if args.memory_gib else "")
    rows, extra = [], {"config": args.config, "card": card, "finder": [], "train": [], "margin": margin}

    def save() -> None:  # after every row: a call cut off by its time limit still returns what it measured
        if rows:
            write_report(rows, args.out, args.name, {"title": f"{args.config} (random weights) on {extra['card']}",
                                                      "margin": round(margin, 4)})
        Path(args.out, f"{args.name}_extra.json").write_text(json.dumps(extra, indent=2))

    if args.hf or args.hf_liger:
        from hf_baseline import hf_exact, hf_finder, hf_max_seq, load_hf_recipe

        loaded = load_hf_recipe(weights, args.hf_liger)
        for seq in args.seq:
            res, model, opt = hf_exact(weights, seq, margin, args.hf_liger, loaded)
            rows.append(res)
            print(format_table([res]), flush=True)
            save()
            if args.finder:
                extra["finder"].append(hf_finder(model, opt, seq))
                print(extra["finder"][-1], flush=True)
                save()
        if args.hf_max_seq:
            extra.setdefault("max_seq", []).append(hf_max_seq(*loaded, margin, liger=args.hf_liger))
            print(extra["max_seq"][-1], flush=True)
            save()
        del model, opt, loaded
        free_device()
    for spec in args.stacks:
        stack = memfit.Stack.from_spec(spec)
        memfit.configure_runtime(stack)  # e.g. compile's dynamo recompile limit
        model = memfit.load_model(weights, stack)
        for seq in args.seq:
            rows.append(plan(model, stack, seq_len=seq, margin=margin, fresh=True))
            print(format_table(rows[-1:]), flush=True)
            save()
        del model
        free_device()
    if args.train:
        extra["train"].append(train_check(weights, args.train, args.train_seq or args.seq[0], args.train_steps,
                                              margin))
        print(extra["train"][-1], flush=True)
        save()
    print(format_table(rows))
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
