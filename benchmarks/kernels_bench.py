"""Each exact linear cross-entropy implementation of `cce` and the `liger` strategy, at one size on an H200:
peak memory and tokens/s of a LoRA step on Llama-3.2-3B random weights (bf16, gradient checkpointing).

    python benchmarks/kernels_bench.py --seq 2048 --micro-batch 16

Needs `pip install 'memfit[kernels]'` for cut and liger; absent ones are listed and skipped. Each stack runs its
size twice (the second step is the steady-state one) through benchmarks/step_probe.py, one process per stack so a
kernel's allocator state never leaks into the next. Writes kernels_bench_<label>.json files under --out.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from memfit.ops.cross_entropy_kernels import present_implementations

BASE = "lora+bf16+gc"


def stacks() -> dict[str, str]:
    present = present_implementations()
    chosen = {f"cce_{impl}": f"{BASE}+cce:impl={impl}" for impl in ("torch", "cut", "memfit") if impl in present}
    if importlib.util.find_spec("liger_kernel") is not None:
        chosen["liger"] = f"{BASE}+liger"
    missing = [name for name in ("cce_torch", "cce_cut", "cce_memfit", "liger") if name not in chosen]
    if missing:
        print(f"not present here, skipped: {', '.join(missing)}", flush=True)
    return chosen


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="llama-3.2-3b")
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--micro-batch", type=int, default=16)
    ap.add_argument("--out", default=os.environ.get("OUT", "benchmarks/results"))
    args = ap.parse_args()
    probe = Path(__file__).with_name("step_probe.py")
    for label, spec in stacks().items():
        size = str(args.micro_batch)
        subprocess.run([sys.executable, str(probe), "--config", args.config, "--stack", spec, "--seq", str(args.seq),
                        "--sizes", size, size, "--out", args.out, "--name", f"kernels_bench_{label}"], check=False)


if __name__ == "__main__":
    main()
