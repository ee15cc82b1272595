#!/usr/bin/env bash
# Issue 32 on one H200 capped at an H100's 79.19 GiB, in one call (benchmarks/README.md, "not yet run"):
# benchmarks/qlora_speed.py's phases, each with its own deadline inside the call's 600 s (pairs at equal micro-batch,
# the profile of one 4-bit step, the HF recipe, exact maxima); rows are written as they come, so a call cut short
# still returns them. Extra arguments go to the driver (a second call: --seq 2048 --phases pairs:380 hf:440 exact:545).
#   OUT=$OUT/qlora bash benchmarks/gpu_qlora_speed.sh          (from the repo root, after the wheels' install line)
set -uo pipefail
OUT=${OUT:-results}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUT/card.txt" 2>&1
timeout 565 python3 benchmarks/qlora_speed.py --memory-gib 79.19 --out "$OUT" "$@" 2>&1 | tee "$OUT/log.txt"
