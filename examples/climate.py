"""Fine-tune a LLaMA-architecture model on climate-report PDFs with memfit, end to end.

    accelerate launch examples/climate.py                  # the bundled CC BY 4.0 sample (examples/data/climate)
    memfit data fetch climate data/climate && accelerate launch examples/climate.py --pdf-dir data/climate  # all 12
    accelerate launch --config_file launch_configs/ddp.yaml examples/climate.py ...   # several GPUs (see launch_configs/)

Extracts the PDFs, splits them by document, loads the model with the memory-strategy stack, plans the largest
micro-batch, trains with accumulation up to the target effective batch, measures test perplexity before and after,
and writes <output-dir>/<run>/results.json, summary.md and the adapter. Unset options take device defaults
(see memfit.recipes.finetune.DEVICE_DEFAULTS): the seed stack on a GPU, a ~10-minute fp32 budget on a CPU.
"""

import argparse
import logging
import os
import sys
from pathlib import Path

from memfit import CheckpointError, FinetuneConfig, NumericError, run_finetune

BUNDLED_SAMPLE = Path(__file__).resolve().parent / "data" / "climate"  # two CC BY 4.0 papers, see its NOTICE


def parse_args(argv=None) -> FinetuneConfig:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pdf-dir", default=str(BUNDLED_SAMPLE),
                   help="folder of PDFs (default: the bundled sample; `memfit data fetch climate DIR` gets all 12)")
    model = p.add_mutually_exclusive_group()
    model.add_argument("--model", default="smollm2-135m", help="embedded default, local directory or Hub id")
    model.add_argument("--model-config", dest="architecture", help="shipped config (llama-3.2-3b) or config JSON; "
                                                                   "random weights")
    p.add_argument("--random-init", action="store_true", help="random weights (capacity/throughput runs)")
    p.add_argument("--stack", help="memory strategies, e.g. 'lora+bf16+cce+ga:effective_batch=32', or 'auto' "
                                   "(the planner chooses; the CUDA default)")
    p.add_argument("--seq-len", type=int, help="training block and planning length")
    p.add_argument("--target-effective-batch", type=int, help="sequences per optimizer step (all processes)")
    p.add_argument("--max-steps", type=int, help="optimizer steps (overrides --epochs)")
    p.add_argument("--epochs", type=float)
    p.add_argument("--lr", type=float)
    p.add_argument("--eval-context", type=int)
    p.add_argument("--eval-stride", type=int)
    p.add_argument("--eval-max-tokens", type=int, help="score a spread sample of this many test tokens (0: all)")
    p.add_argument("--output-dir", default="results")
    p.add_argument("--run-name")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--margin", type=float, default=0.03, help="fraction of GPU memory the planner keeps free")
    p.add_argument("--fresh", action="store_true", help="re-probe instead of reusing the cached plan")
    p.add_argument("--cpu-budget-gib", type=float, default=4.0, help="CPU: simulated device memory for the planner")
    p.add_argument("--max-micro-batch", type=int, help="upper bound of the planner's search")
    p.add_argument("--checkpoint-every", type=int, help="checkpoint every N optimizer steps (default 100)")
    p.add_argument("--checkpoint-minutes", type=float, help="checkpoint at least every M minutes (default 10)")
    p.add_argument("--keep-non-english", action="store_true", default=None, help="train on documents flagged "
                                                                                 "as not English too")
    args = {k: v for k, v in vars(p.parse_args(argv)).items() if v is not None}
    return FinetuneConfig(**args)


def main(argv=None) -> dict:
    main_process = os.environ.get("RANK", "0") == "0"  # under `accelerate launch`, only rank 0 reports
    logging.basicConfig(level=logging.INFO if main_process else logging.WARNING, format="%(message)s")
    logging.getLogger("accelerate").setLevel(logging.WARNING)  # one line per checkpoint file otherwise
    try:
        results = run_finetune(parse_args(argv))
    except (ValueError, CheckpointError, NumericError) as exc:  # user errors: the message says what to change
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    run_dir = Path(results["config"]["output_dir"]) / results["config"]["run_name"]
    if main_process:
        print((run_dir / "summary.md").read_text())
    return results


if __name__ == "__main__":
    main()
