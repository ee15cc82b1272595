#!/usr/bin/env bash
# Issue 31/33 on one H200 capped at an H100's 79.19 GiB, in one call: per family (random weights from the shipped
# config), the seed + cce stack at seq 2048 — `memfit plan`'s analytic prediction against the maximum its probes find
# (goal +-10 %, as for Llama). Each plan gets at most PER_PLAN_S seconds and none starts after DEADLINE_S.
#   OUT=$OUT/fam bash benchmarks/gpu_families.sh      (from the repo root, after the wheels' install line)
set -uo pipefail
OUT=${OUT:-results}; PER_PLAN_S=${PER_PLAN_S:-110}; DEADLINE_S=${DEADLINE_S:-400}
STACK=${STACK:-lora+q4+bf16+gc+cce+paged_adam8}
# memfit's margin is the fraction of torch's reported capacity kept free: 1 - 79.19 / 139.80 caps the plan at 79.19 GiB.
MARGIN=${MARGIN:-0.4335}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUT/card.txt" 2>&1
start=$(date +%s)
for family in ${FAMILIES:-llama-3.2-3b qwen2.5-3b qwen3-4b mistral-7b-v0.3 gemma-2-2b phi-3.5-mini}; do
  used=$(( $(date +%s) - start ))
  if (( used > DEADLINE_S )); then echo "$family: skipped (deadline)" | tee -a "$OUT/skipped.txt"; continue; fi
  timeout "$PER_PLAN_S" python3 -m memfit plan --model-config "$family" --stack "$STACK" --seq-len 2048 \
    --margin "$MARGIN" --fresh --json "$OUT/$family.json" > "$OUT/$family.log" 2>&1
  echo "$family: rc=$? after $(( $(date +%s) - start )) s: $(grep -m1 'analytic prediction' "$OUT/$family.log")"
done
