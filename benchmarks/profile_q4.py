"""Where one 4-bit training step spends its GPU time: torch.profiler over one step (after a warm-up step) of a stack,
the top ops by device time, and the share of the kernel families issue 32 asks about (bnb's dequantization,
matmuls, attention, everything else).

    python benchmarks/profile_q4.py --stack "lora+q4+bf16+gc+cce" "lora+q4+q4fused+bf16+gc+cce" --batch 32 --out $OUT

Writes NAME_<i>.txt (the top-ops table) per stack and NAME.json (families, counts, step seconds). qlora_speed.py calls
`profile_stack` as one of its phases.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

import memfit
from memfit.models import random_weights_dir
from memfit.plan.bench import free_device
from memfit.plan.probe import TimingMeter, run_probe

# kernel-name fragments per family, first match wins (bnb's CUDA kernels are kDequantize*; flash/efficient attention
# before matmuls, whose CUTLASS names the efficient-attention kernels share)
FAMILIES = {"dequantize": ("dequant",), "attention": ("flash", "fmha", "attention", "sdpa"),
            "matmul": ("gemm", "cutlass", "nvjet", "xmma", "matmul")}


def _self_us(evt) -> float:
    """A kernel's own device time (named device_* since torch 2.4; both GPU and CPU images are newer)."""
    return float(getattr(evt, "self_device_time_total", 0.0) or 0.0)


def family(name: str) -> str:
    low = name.lower()
    return next((f for f, keys in FAMILIES.items() if any(k in low for k in keys)), "other")


def profile_stack(weights: str, spec: str, batch: int, seq: int, rows: int = 25) -> tuple[dict, str]:
    """(summary, top-ops table) of one step of `spec` at batch x seq, after one warm-up step (compilation, allocator)."""
    from torch.profiler import ProfilerActivity, profile

    stack = memfit.Stack.from_spec(spec)
    memfit.configure_runtime(stack)
    model = memfit.load_model(weights, stack)
    device = torch.device("cuda", 0)
    ctx = stack.context(device)
    optimizer = stack.make_optimizer(model, ctx, lr=0.0)
    try:
        def step():
            return run_probe(model, optimizer, stack, ctx, TimingMeter(), batch, seq)

        warm = step()
        if not warm.fits:
            return {"stack": spec, "batch": batch, "seq": seq, "error": warm.error}, ""
        torch.cuda.synchronize()
        start = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            p = step()
        seconds = time.perf_counter() - start
        # kernel events only (an op's own row would count its kernels a second time)
        kernels = [e for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA]
        families: dict[str, dict[str, float]] = {}
        for e in kernels:
            f = families.setdefault(family(e.key), {"us": 0.0, "calls": 0})
            f["us"] += _self_us(e)
            f["calls"] += e.count
        total = sum(f["us"] for f in families.values()) or 1.0
        for f in families.values():
            f["share"] = round(f["us"] / total, 4)
        table = prof.key_averages().table(sort_by="self_device_time_total", row_limit=rows)  # torch >= 2.4
        summary = {"stack": spec, "batch": batch, "seq": seq, "fits": p.fits, "profiled_step_s": round(seconds, 3),
                   "device_us_total": round(total), "families": families}
        return summary, table
    finally:
        del model, optimizer
        free_device()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="llama-3.2-3b")
    ap.add_argument("--stack", nargs="+", required=True)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--out", default=os.environ.get("OUT", "benchmarks/results"))
    ap.add_argument("--name", default="profile_q4")
    args = ap.parse_args()
    weights = str(random_weights_dir(memfit.load_config(args.config), torch.bfloat16, torch.device("cuda", 0)))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summaries = []
    for i, spec in enumerate(args.stack):
        summary, table = profile_stack(weights, spec, args.batch, args.seq)
        summaries.append(summary)
        (out / f"{args.name}_{i}.txt").write_text(f"{spec} at {args.batch} x {args.seq}\n{table}\n")
        print(json.dumps(summary), flush=True)
        (out / f"{args.name}.json").write_text(json.dumps(summaries, indent=2))


if __name__ == "__main__":
    main()
