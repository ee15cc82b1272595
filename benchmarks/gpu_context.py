"""Longest trainable context at micro-batch 1 under several memory caps, memfit next to the HF recipe (same call)
and Unsloth's published numbers (issue 33). Not yet run: see benchmarks/README.md, "not yet run".

    python benchmarks/gpu_context.py --config llama-3.1-8b --caps 16 24 40 80 --rope-scaling llama3:factor=64 \
        --out $OUT --name context8b

Unsloth's setting: Llama-3.1-8B QLoRA, rank 32 on all linear layers, batch 1, sequences padded to length. memfit's
row is `memfit plan --max-seq-len` with the same adapters (its exact search against real OOMs, under a RoPE scaling so
it may pass the native 131,072); the HF recipe's row is hf_baseline.hf_max_seq with the same adapters. A cap is the
allocator's per-process fraction (as --memory-gib in gpu_bench.py). Rows are written after each measurement, so a
call cut off by its time limit still returns what it measured.
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
from memfit.plan.rope import config_overrides, parse_rope_scaling  # noqa: E402
from memfit.plan.planner import versions  # noqa: E402
from memfit.plan.seq_len import plan_max_seq_len  # noqa: E402

# Unsloth's published maximum context lengths, Llama-3.1-8B QLoRA r32 all linear, batch 1 (GB of the card);
# source: Unsloth's documentation and blog on Llama 3.1 context lengths ("published", not measured here)
PUBLISHED = {"unsloth": {16: 40724, 24: 78475, 40: 153977, 48: 191728, 80: 342733},
             "HF + FA2": {16: 2551, 24: 5789, 40: 12264, 48: 15502, 80: 28454}}
MEMFIT_STACK = "lora:r=32,alpha=32,dropout=0,targets=all-linear+q4+bf16+gc+cce+offload+tiled_mlp+paged_adam8"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="llama-3.1-8b")
    ap.add_argument("--caps", type=float, nargs="+", default=[16, 24, 40, 80], help="GiB per row")
    ap.add_argument("--stack", default=MEMFIT_STACK)
    ap.add_argument("--rope-scaling", default="llama3:factor=64")
    ap.add_argument("--hf", action="store_true", help="also the HF recipe with the same adapters")
    ap.add_argument("--hf-unit", type=int, default=512, help="HF recipe: search in steps of this many tokens")
    ap.add_argument("--out", default=os.environ.get("OUT", "benchmarks/results"))
    ap.add_argument("--name", default="context")
    args = ap.parse_args()

    memfit.configure_runtime()
    total = torch.cuda.get_device_properties(0).total_memory / 2**30
    config = memfit.load_config(args.config)
    overrides = config_overrides(config, parse_rope_scaling(args.rope_scaling))
    weights = str(random_weights_dir(config, torch.bfloat16, torch.device("cuda", 0)))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {"config": args.config, "card": torch.cuda.get_device_name(0), "stack": args.stack,
              "rope_scaling": overrides["rope_parameters"], "published": PUBLISHED, "rows": [],
              "versions": versions(), "date": time.strftime("%Y-%m-%d")}

    def save() -> None:
        (out / f"{args.name}.json").write_text(json.dumps(record, indent=1, default=str))

    stack = memfit.Stack.from_spec(args.stack)
    memfit.configure_runtime(stack)
    for cap in args.caps:
        margin = max(0.0, 1 - cap / total)
        model = memfit.load_model(weights, stack, config_overrides=overrides)
        t = time.perf_counter()
        res = plan_max_seq_len(model, stack, margin=margin, fresh=True,
                               progress=lambda p: print(f"  {cap:g} GiB: seq {p.micro_batch} "
                                                        f"{'fits' if p.fits else 'OOM'}", flush=True))
        record["rows"].append({"cap_gib": cap, "who": "memfit", "max_seq_len": res.max_seq_len,
                               "peak_gib": res.peak_gib, "probes": res.probe_count,
                               "seconds": time.perf_counter() - t})
        del model
        free_device()
        save()
        if args.hf:
            from hf_baseline import ALL_LINEAR_R32, hf_max_seq, load_hf_recipe

            loaded = load_hf_recipe(weights, lora=ALL_LINEAR_R32)
            row = hf_max_seq(*loaded, margin, unit=args.hf_unit)
            record["rows"].append({"cap_gib": cap, "who": "HF recipe (same adapters)", **row})
            del loaded
            free_device()
            save()
        print(json.dumps(record["rows"][-2:], default=str), flush=True)


if __name__ == "__main__":
    main()
