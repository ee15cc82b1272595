"""Time single training steps of stacks at fixed micro-batches (no search): for stacks whose probes are too slow to
search in one call (offload), and for throughput comparisons at one size (repeat a size: the first step of a compiled
stack includes compilation).

    python benchmarks/step_probe.py --stack "lora+q4+bf16+gc+cce+offload+paged_adam8" --seq 512 --sizes 128 128 850

Prints and writes (--out) one row per probe: fits, peak GiB, seconds, tokens/s, offload host arena GiB.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch  # noqa: E402

import memfit  # noqa: E402
from memfit.plan.bench import free_device  # noqa: E402
from memfit.models import random_weights_dir  # noqa: E402
from memfit.plan.planner import versions  # noqa: E402
from memfit.plan.probe import CudaMeter, run_probe  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="llama-3.2-3b")
    ap.add_argument("--stack", nargs="+", required=True)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--sizes", type=int, nargs="+", required=True)
    ap.add_argument("--out", default=os.environ.get("OUT", "benchmarks/results"))
    ap.add_argument("--name", default="step_probe")
    args = ap.parse_args()
    device = torch.device("cuda", 0)
    weights = str(random_weights_dir(memfit.load_config(args.config), torch.bfloat16, device))
    rows = []
    for spec in args.stack:
        stack = memfit.Stack.from_spec(spec)
        memfit.configure_runtime(stack)  # before the first CUDA allocation: the allocator setting is read then
        model = memfit.load_model(weights, stack)
        ctx = stack.context(device)
        optimizer = stack.make_optimizer(model, ctx, lr=0.0)
        meter = CudaMeter(device, 0.0).__enter__()  # caps device memory
        for b in args.sizes:
            p = run_probe(model, optimizer, stack, ctx, meter, b, args.seq)
            off = getattr(model, "_memfit_offloader", None)
            row = {"stack": spec, "seq": args.seq, "micro_batch": b, "fits": p.fits,
                   "peak_gib": p.peak_bytes / 2**30 if p.peak_bytes else None, "seconds": round(p.seconds, 2),
                   "tokens_per_s": round(p.tokens_per_s) if p.tokens_per_s else None, "error": p.error,
                   "host_arena_gib": round(off.arena.reserved / 2**30, 1) if off else None}
            rows.append(row)
            print(json.dumps(row), flush=True)
            Path(args.out).mkdir(parents=True, exist_ok=True)
            Path(args.out, f"{args.name}.json").write_text(json.dumps(
                {"card": torch.cuda.get_device_name(0), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                 "versions": versions(), "rows": rows}, indent=2))
        del model, optimizer
        free_device()


if __name__ == "__main__":
    main()
