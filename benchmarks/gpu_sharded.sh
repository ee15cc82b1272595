#!/usr/bin/env bash
# Issue 20: plan under the engine that trains, on 2 GPUs: for each of DDP, ZeRO-2, ZeRO-3 and FSDP2, `memfit plan`
# under `accelerate launch` (the probes go through the engine's prepared model and optimizer: memfit.plan.sharded),
# then a 50-step train at the engine's plan (launch_configs/smoke.py --plan --engine-plan), JSON out.
#
# NOT RUN: no multi-GPU machine was lent to the session that wrote it; these are the command lines a 2-GPU run
# would use. On CPU the same logic is tested with two gloo processes (tests/launch/test_sharded_plan.py, FSDP2 and
# DDP); DeepSpeed's engine is only exercised here.
#
#   OUT=/path/to/out bash benchmarks/gpu_sharded.sh
#
# Environment (defaults): MODEL (llama-3.2-3b, random weights), STACK ('bf16+gc': a full fine-tune, where weights,
# gradients and Adam moments dominate and sharding pays; for QLoRA use 'lora+quant4bit:quant_storage=bf16+bf16+gc'),
# SEQ (512), NPROC (2), CONFIGS ("ddp deepspeed_zero2 deepspeed_zero3 fsdp"), PER_RUN_S (240 per plan launch),
# PYTHON (python3), MEMFIT_CACHE (/tmp/memfit-cache).
# Writes OUT/plan_<config>/plan.json (+ .md/.png) and OUT/plan_<config>.log per engine, then benchmarks/multi_gpu.sh's
# OUT/<config>/smoke_rank*.json, OUT/multi_gpu.json and OUT/multi_gpu.md for the trains (their plan_engine field
# says which engine planned). Expected: the ZeRO-3/FSDP2 plans larger than DDP's for the full fine-tune.
set -u
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to the output folder}"
MODEL=${MODEL:-llama-3.2-3b}
STACK=${STACK:-'bf16+gc'}
SEQ=${SEQ:-512}
NPROC=${NPROC:-2}
CONFIGS=${CONFIGS:-"ddp deepspeed_zero2 deepspeed_zero3 fsdp"}
PYTHON=${PYTHON:-python3}
export MEMFIT_CACHE=${MEMFIT_CACHE:-/tmp/memfit-cache}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$OUT"
MEMFIT=$(command -v memfit) || { echo "memfit is not installed (pip install -e .)"; exit 2; }

for name in $CONFIGS; do
  start=$SECONDS
  # shellcheck disable=SC2086
  timeout -k 20 "${PER_RUN_S:-240}" "$PYTHON" -m accelerate.commands.launch --config_file "launch_configs/$name.yaml" \
    --num_processes "$NPROC" "$MEMFIT" plan --model-config "$MODEL" --stack "$STACK" --seq-len "$SEQ" --fresh \
    --out "$OUT/plan_$name" --name plan > "$OUT/plan_$name.log" 2>&1
  echo "plan $name: exit $? in $((SECONDS - start)) s"
done

# the trains: 50 steps at the plan each engine finds for itself (a second model copy is prepared for the probes)
OUT="$OUT" MODEL="$MODEL" STACK="$STACK" SEQ="$SEQ" NPROC="$NPROC" CONFIGS="$CONFIGS" STEPS=50 \
  EXTRA="--engine-plan ${EXTRA:-}" bash benchmarks/multi_gpu.sh
