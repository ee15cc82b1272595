"""`memfit merge RUN_DIR --out DIR`: the run's adapter folded into its full-precision base, written as a plain
transformers checkpoint (safetensors, config, tokenizer) that `AutoModelForCausalLM.from_pretrained(DIR)` loads."""
from __future__ import annotations

import argparse
import contextlib
import logging
import sys

from .options import EffectiveDefaults

log = logging.getLogger(__name__)


def add_merge_parser(sub) -> None:
    p = sub.add_parser("merge", help="merge a run's adapter into its base: `memfit merge RUN_DIR --out DIR`",
                       description=__doc__, formatter_class=EffectiveDefaults)
    p.add_argument("run_dir", help="a run directory written by `memfit train` (holds results.json and adapter/)")
    p.add_argument("--out", required=True, help="new folder for the merged model (never overwritten)")
    p.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], default="fp32", help="dtype of the written weights")
    p.set_defaults(func=cmd_merge)


def cmd_merge(args) -> int:
    from ..core.files import check_cache_dir
    from ..models import cache_root
    from ..recipes.merge import merge_run

    check_cache_dir(cache_root(), "MEMFIT_CACHE")  # before minutes of loading: the text cache and digests live there

    with contextlib.redirect_stdout(sys.stderr):  # stdout: the merged folder alone, for scripts
        out = merge_run(args.run_dir, args.out, dtype=args.dtype)
    log.info(f"merged {args.run_dir} into {out}: load it with AutoModelForCausalLM.from_pretrained({str(out)!r})")
    print(out)
    return 0
