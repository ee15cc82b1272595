"""Fine-tune a LLaMA-architecture model on climate-report PDFs with memfit, end to end.

    accelerate launch --config_file launch_configs/one_process.yaml examples/climate.py   # the bundled CC BY 4.0 sample
    memfit data fetch climate data/climate && python examples/climate.py --pdf-dir data/climate   # all 12 PDFs
    python examples/climate.py recipes/smollm2-gpu.yaml --max-steps 50   # a recipe, flags override it
    accelerate launch --config_file launch_configs/ddp.yaml examples/climate.py ...   # several GPUs (see launch_configs/)

The same job as `memfit train`: every setting of memfit.FinetuneConfig is a flag (`--help` lists them with their
defaults). Unset options take device defaults: the seed stack on a GPU, a minutes-long fp32 budget on a CPU. Writes
<output-dir>/<run>/results.json, summary.md and the adapter, and prints the summary. Third-party warnings and progress
bars that are not the user's to act on are dropped (memfit.quiet); `-v` / `--verbose` shows them.
"""

import logging
import os
import sys
from pathlib import Path

from memfit import CheckpointError, NumericError, parse_run_config, run_finetune
from memfit.quiet import quiet_third_party

BUNDLED_SAMPLE = Path(__file__).resolve().parent / "data" / "climate"  # two CC BY 4.0 papers, see its NOTICE


def main(argv=None) -> dict:
    main_process = os.environ.get("RANK", "0") == "0"  # under `accelerate launch`, only rank 0 reports
    logging.basicConfig(level=logging.INFO if main_process else logging.WARNING, format="%(message)s")
    argv = list(argv) if argv is not None else sys.argv[1:]
    verbose = any(a in ("-v", "--verbose") for a in argv)
    try:
        with quiet_third_party(verbose=verbose):
            cfg = parse_run_config([a for a in argv if a not in ("-v", "--verbose")], prog="climate.py",
                                   defaults={"pdf_dir": str(BUNDLED_SAMPLE)})
            results = run_finetune(cfg)
    except (ValueError, CheckpointError, NumericError) as exc:  # user errors: the message says the fix
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    if main_process:
        print((Path(results["config"]["output_dir"]) / results["config"]["run_name"] / "summary.md").read_text())
    return results


if __name__ == "__main__":
    main()
