"""How long `memfit` takes to answer --help/--version and every `COMMAND --help` (issue 34: < 1.5 s on 2 cores).

    python benchmarks/startup.py [--repeats 5] [--python PATH] [--out benchmarks/results/startup-DATE.json]

Runs each command N times in a fresh interpreter, interleaved (one round runs every command once) so a busy machine
slows all of them alike, and prints the median and the range per command; `--out` also writes them as JSON with the
machine's load average before and after (a busy machine inflates every number). Not a test: timings depend on the
machine."""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMANDS = [["--version"], ["--help"], *([name, "--help"] for name in (
    "train", "generate", "eval", "merge", "plan", "bench", "estimate", "stacks", "data")),
    ["train", "smollm2-cpu", "--help"], ["data"], ["data", "inspect", "--help"], ["data", "fetch", "--help"]]
LIMIT_S = 1.5


def seconds(python: str, argv: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run([python, "-m", "memfit", *argv], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    if done.returncode != 0:
        raise SystemExit(f"memfit {' '.join(argv)} failed: {done.stderr[-500:]}")
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--python", default=sys.executable, help="the interpreter whose memfit is timed (e.g. a venv's)")
    p.add_argument("--out", type=Path, help="also write the medians and ranges here as JSON")
    args = p.parse_args()
    load_before = os.getloadavg()
    times: dict[str, list[float]] = {" ".join(c): [] for c in COMMANDS}
    for _ in range(args.repeats):
        for argv in COMMANDS:
            times[" ".join(argv)].append(seconds(args.python, argv))
    print(f"{'memfit ...':<24} {'median s':>9} {'min':>6} {'max':>6}  (limit {LIMIT_S} s, {os.cpu_count()} cores)")
    for name, values in times.items():
        median = statistics.median(values)
        flag = "" if median < LIMIT_S else "  over"
        print(f"{name:<24} {median:9.2f} {min(values):6.2f} {max(values):6.2f}{flag}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({
            "limit_s": LIMIT_S, "cores": os.cpu_count(), "repeats": args.repeats, "python": sys.version.split()[0],
            "load_average_1_5_15_min": {"before": load_before, "after": os.getloadavg()},
            "seconds": {name: {"median": round(statistics.median(v), 3), "min": round(min(v), 3),
                               "max": round(max(v), 3)} for name, v in times.items()}}, indent=1) + "\n")


if __name__ == "__main__":
    main()
