#!/usr/bin/env bash
# Quality recipe for the embedded SmolLM2-135M on one GPU (recipes/smollm2-gpu.yaml): a full fine-tune, bf16 autocast
# over fp32 master weights, lr 5e-5, 3 epochs, all climate test tokens at context 512. Chosen by the GPU sweep
# (benchmarks/sweeps/gpu_quality.json, results in benchmarks/results/h200-2026-12-02/sweeps/gpu_quality): -14.8 %
# held-out perplexity against the original (target >= 12 %). Prints the three numbers of the report (original fp32,
# base as trained, fine-tuned) and the deployable model's (a LoRA run: merged into the fp32 base; a full fine-tune: its
# saved weights, scored at full precision).
#   PDFS=data/climate OUT=results bash benchmarks/gpu_quality.sh          (from the repo root)
set -euo pipefail
OUT=${OUT:-results}; PDFS=${PDFS:-data/climate}; RUN=${RUN:-smollm2-135m-gpu-quality}
[ -d "$PDFS" ] || python -m memfit data fetch climate "$PDFS"
accelerate launch --config_file launch_configs/single_gpu.yaml -m memfit train recipes/smollm2-gpu.yaml \
    --pdf-dir "$PDFS" --output-dir "$OUT" --run-name "$RUN" "$@"
# the run's recorded test documents and evaluation settings, the deployable model at full precision
python -m memfit eval "$OUT/$RUN" --merge > "$OUT/$RUN/merged_eval.json"
python - "$OUT/$RUN" <<'PY'
import json, sys
run = sys.argv[1]
r, merged = json.load(open(f"{run}/results.json")), json.load(open(f"{run}/merged_eval.json"))
print(f"original (fp32) {r['original_perplexity']:.3f} | base as trained {r['base_perplexity']:.3f} | "
      f"fine-tuned {r['final_perplexity']:.3f} ({r['perplexity_change_pct']:+.1f} % vs original) | "
      f"deployable fp32 {merged['perplexity']:.3f}")
PY
