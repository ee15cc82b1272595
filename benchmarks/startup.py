"""How long `memfit` takes to answer --help/--version and every `COMMAND --help` (issue 34: < 1.5 s on 2 cores).

    python benchmarks/startup.py [--repeats 5] [--python PATH]

Runs each command N times in a fresh interpreter, interleaved (one round runs every command once) so a busy machine
slows all of them alike, and prints the median and the range per command. Not a test: timings depend on the machine."""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMANDS = [["--version"], ["--help"], *([name, "--help"] for name in (
    "train", "generate", "eval", "merge", "plan", "bench", "estimate", "stacks", "data")),
    ["data", "inspect", "--help"], ["data", "fetch", "--help"]]
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
    args = p.parse_args()
    times: dict[str, list[float]] = {" ".join(c): [] for c in COMMANDS}
    for _ in range(args.repeats):
        for argv in COMMANDS:
            times[" ".join(argv)].append(seconds(args.python, argv))
    print(f"{'memfit ...':<24} {'median s':>9} {'min':>6} {'max':>6}  (limit {LIMIT_S} s, {os.cpu_count()} cores)")
    for name, values in times.items():
        median = statistics.median(values)
        flag = "" if median < LIMIT_S else "  over"
        print(f"{name:<24} {median:9.2f} {min(values):6.2f} {max(values):6.2f}{flag}")


if __name__ == "__main__":
    main()
