#!/usr/bin/env bash
# Issue #8: every 2-GPU launch config (DDP, ZeRO-2, ZeRO-3, FSDP2) trains the same random Llama at its planned
# micro-batch through launch_configs/smoke.py; one table compares them.
#
#   OUT=/path/to/out bash benchmarks/multi_gpu.sh
#
# Environment (defaults): STACK ('lora+quant4bit:quant_storage=bf16+bf16+gc'), SEQ (512), STEPS (30),
# MODEL (llama-3.2-3b: a shipped config or a LlamaConfig JSON), NPROC (2), PER_RUN_S (140, per launch),
# CONFIGS ("ddp deepspeed_zero2 deepspeed_zero3 fsdp": split them over several calls if the time is short),
# EXTRA (more smoke.py arguments, e.g. "--max-micro-batch 256"), PYTHON (python3), DEADLINE_S (570: a launch gets at
# most what is left of it, and none when under 30 s are left, so the report is written before a 600 s call limit),
# MEMFIT_CACHE (/tmp/memfit-cache: the random weights and plan cache; keep it outside OUT, 3B is 6.4 GB).
# Writes OUT/_weights.log, OUT/<config>.log, OUT/<config>.rc (exit code; 124 = timed out), OUT/<config>/smoke_rank*.json,
# then OUT/multi_gpu.json and OUT/multi_gpu.md (benchmarks/multi_gpu_report.py). A failed or timed-out config never
# stops the others.
set -u
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to the output folder}"
STACK=${STACK:-'lora+quant4bit:quant_storage=bf16+bf16+gc'}
SEQ=${SEQ:-512}
STEPS=${STEPS:-30}
MODEL=${MODEL:-llama-3.2-3b}
NPROC=${NPROC:-2}
PER_RUN_S=${PER_RUN_S:-140}
CONFIGS=${CONFIGS:-"ddp deepspeed_zero2 deepspeed_zero3 fsdp"}
EXTRA=${EXTRA:-}
PYTHON=${PYTHON:-python3}
export MEMFIT_CACHE=${MEMFIT_CACHE:-/tmp/memfit-cache}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$OUT"
(command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv) \
  > "$OUT/_gpus.csv" 2>&1

# The random weights once, in one process (bf16 on cuda:0; fp32 on CPU), in the folder smoke.py looks up by config.
start=$SECONDS
timeout -k 15 "${GEN_S:-300}" "$PYTHON" -c "
import sys, torch
from memfit.models import load_config, random_weights_dir
cuda = torch.cuda.is_available()
print(random_weights_dir(load_config(sys.argv[1]), torch.bfloat16 if cuda else torch.float32,
                         torch.device('cuda', 0) if cuda else torch.device('cpu')))
" "$MODEL" > "$OUT/_weights.log" 2>&1
echo "weights: exit $? in $((SECONDS - start)) s: $(tail -n 1 "$OUT/_weights.log")"

for name in $CONFIGS; do
  rm -rf "${OUT:?}/$name"
  start=$SECONDS
  limit=$(( ${DEADLINE_S:-570} - SECONDS - 25 ))
  [ "$limit" -gt "$PER_RUN_S" ] && limit=$PER_RUN_S
  if [ "$limit" -lt 30 ]; then
    echo skipped > "$OUT/$name.rc"
    echo "$name: skipped, ${DEADLINE_S:-570} s deadline" | tee "$OUT/$name.log"
    continue
  fi
  # on timeout the launcher gets SIGTERM and ends its ranks; -k: SIGKILL for a launcher still there 20 s later
  # (then the loop below ends its ranks)
  # shellcheck disable=SC2086
  timeout -k 20 "$limit" "$PYTHON" -m accelerate.commands.launch --config_file "launch_configs/$name.yaml" \
    --num_processes "$NPROC" launch_configs/smoke.py --train --model-config "$MODEL" --plan --seq "$SEQ" \
    --steps "$STEPS" --stack "$STACK" --out "$OUT/$name" $EXTRA > "$OUT/$name.log" 2>&1
  rc=$?
  echo "$rc" > "$OUT/$name.rc"
  echo "$name: exit $rc in $((SECONDS - start)) s"
  for f in "$OUT/$name"/rank*.pid; do  # ranks run in their own sessions: a killed launcher can leave them behind
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null && grep -q smoke.py "/proc/$pid/cmdline" 2>/dev/null; then
      echo "$name: rank process $pid outlived its launcher: killed" | tee -a "$OUT/$name.log"
      kill -9 "$pid"
    fi
  done
done

"$PYTHON" benchmarks/multi_gpu_report.py "$OUT"
