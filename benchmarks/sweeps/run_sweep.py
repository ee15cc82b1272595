"""Run fine-tune configurations side by side and collect their three perplexities into one JSON file.

    python benchmarks/sweeps/run_sweep.py SWEEP.json --out DIR [--parallel 3] [--device cpu|cuda] [--threads 2]

SWEEP.json: {"common": [flags...], "runs": {"name": [flags...], ...}}; every run is
`python examples/climate.py <common> <run flags> --output-dir DIR --run-name NAME`, run as its own process (a CPU
run gets CUDA_VISIBLE_DEVICES="" and --threads torch threads, so several share a machine the way the 2-core demo
box runs one). Writes DIR/sweep.json: per run its flags, original / base / fine-tuned perplexity, the change against
the original, training and total seconds, and its exit code (a failed run is recorded, the others go on).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_one(name: str, flags: list[str], args) -> dict:
    env = dict(os.environ)
    if args.device == "cpu":
        env.update(CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    cmd = [sys.executable, str(ROOT / "examples" / "climate.py"), *flags, "--output-dir", str(args.out),
           "--run-name", name, "--progress", "false"]
    started = time.perf_counter()
    with open(Path(args.out) / f"{name}.log", "w") as log:
        rc = subprocess.call(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    row = {"name": name, "flags": flags, "rc": rc, "wall_s": round(time.perf_counter() - started, 1)}
    results = Path(args.out) / name / "results.json"
    if rc == 0 and results.is_file():
        r = json.loads(results.read_text())
        row.update({k: r.get(k) for k in ("original_perplexity", "base_perplexity", "final_perplexity",
                                          "perplexity_change_pct", "tokens_per_s", "effective_batch_size")})
        row["steps"] = r["train"].get("steps")
        row["seconds"] = r.get("seconds")
        row["scored_tokens"] = r["evaluation"].get("scored_tokens")
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sweep")
    p.add_argument("--out", required=True)
    p.add_argument("--parallel", type=int, default=3)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    spec = json.loads(Path(args.sweep).read_text())
    Path(args.out).mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(args.parallel) as pool:
        rows = list(pool.map(lambda kv: run_one(kv[0], spec.get("common", []) + kv[1], args), spec["runs"].items()))
    out = {"sweep": Path(args.sweep).name, "device": args.device, "threads": args.threads, "parallel": args.parallel,
           "date": time.strftime("%Y-%m-%d"), "common": spec.get("common", []), "runs": rows}
    (Path(args.out) / "sweep.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
