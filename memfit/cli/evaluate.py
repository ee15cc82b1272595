"""`memfit eval RUN_DIR`: perplexity and bits per byte of a finished run on exactly its recorded test documents.

The documents are re-extracted from the run's recorded sources and each must match the sha256 results.json holds,
the adapter goes through the checked loader (one trained for another model is refused), and the window, stride,
batch and token sample default to what the run used, so `memfit eval RUN_DIR` reproduces the run's final number.
stdout carries only the JSON result (scripts parse it); progress goes to stderr.
`memfit eval --data DIR --model M` scores a model on every document of a PDF folder (no split, no adapter)."""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from typing import Any

from ..recipes.limits import MAX_COUNT
from ..recipes.sections import EvalSection
from .options import bounded

log = logging.getLogger(__name__)
COUNT = bounded(int, 1, MAX_COUNT)
# `--data DIR` has no run to take settings from: the library's defaults, every token scored
FOLDER_DEFAULTS = EvalSection(eval_context=512, eval_stride=None, eval_batch_size=8, eval_max_tokens=None)


def add_eval_parser(sub) -> None:
    p = sub.add_parser("eval", help="perplexity of a run on its recorded test documents (`memfit eval RUN_DIR`)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", nargs="?", help="a run directory written by `memfit train` (holds results.json)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--base", action="store_true", help="score the base model as trained, without the adapter")
    which.add_argument("--merge", action="store_true", help="score the adapter merged into the full-precision base "
                                                            "(what `memfit merge` exports)")
    p.add_argument("--context", type=bounded(int, 2, MAX_COUNT), help="evaluation window in tokens (default: the "
                                                                        "run's eval_context)")
    p.add_argument("--stride", type=COUNT, help="sliding-window stride (default: the run's eval_stride)")
    p.add_argument("--batch-size", type=COUNT, help="windows per forward pass (default: the run's eval_batch_size)")
    p.add_argument("--max-tokens", type=bounded(int, 0, MAX_COUNT), help="score an evenly spaced sample of this many test tokens, 0 = all "
                                                  "(default: the run's eval_max_tokens)")
    p.add_argument("--data", help="without RUN_DIR: a folder of PDFs whose every document is scored (window 512, "
                                  "batch 8, every token)")
    p.add_argument("--model", default="smollm2-135m", help="with --data: the model to score (default: %(default)s)")
    p.set_defaults(func=cmd_eval)


def _settings(args, cfg):
    """The run's evaluation section with the flags typed over it (the flags' ranges are checked at parse time)."""
    return cfg.model_copy(update=dict(
        eval_context=args.context or cfg.eval_context,
        eval_stride=cfg.eval_stride if args.stride is None else args.stride,
        eval_batch_size=args.batch_size or cfg.eval_batch_size,
        eval_max_tokens=cfg.eval_max_tokens if args.max_tokens is None else args.max_tokens))


def _score(model, documents, tokenizer, settings, label: str) -> dict[str, Any]:
    """The run's own scorer (recipes.held_out): the same sample, the same tokens scored, the same numbers."""
    from ..recipes.held_out import HeldOut

    held_out = HeldOut(documents, tokenizer, settings, accelerator=None, progress=True, say=log.info)
    res = held_out.score(model, label)
    return {**res.to_dict(), "scored": label, "sample": held_out.info, "tokens_scored": held_out.scored,
            "all_tokens": held_out.all_tokens.get(label)}


def cmd_eval(args) -> int:
    if bool(args.run_dir) == bool(args.data):
        raise ValueError("memfit eval needs a run directory (`memfit eval RUN_DIR`) or, to score a model on a PDF "
                         "folder, `--data DIR [--model M]`; not both")
    # stdout is the JSON alone: libraries that print on import (DeepSpeed's accelerator notice) go to stderr
    with contextlib.redirect_stdout(sys.stderr):
        result = _eval_run(args) if args.run_dir else _eval_folder(args)
    print(json.dumps(result, indent=2))
    return 0


def _eval_run(args) -> dict[str, Any]:
    from ..recipes.merge import merged_model
    from ..recipes.held_out import fitted_context
    from ..recipes.saved_run import load_base, load_trained, read_run, run_tokenizer, test_documents

    run = read_run(args.run_dir)
    settings = _settings(args, run.config.eval)
    tokenizer = run_tokenizer(run)
    documents = test_documents(run, tokenizer)  # a missing or changed document is refused before the slow load
    label = "base" if args.base else "merged" if args.merge else "adapter"
    model = load_base(run) if args.base else merged_model(run) if args.merge else load_trained(run)
    limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    # never past what the model saw
    settings = settings.model_copy(update={"eval_context": fitted_context(settings.eval_context, limit, log.info)})
    result = _score(model, documents, tokenizer, settings, label)
    return {**result, "run": str(run.path), "model": run.config.model.name, "stack": run.stack,
            "test_documents": [d["name"] for d in documents]}


def _eval_folder(args) -> dict[str, Any]:
    from ..data import PdfSource, load_records, tokenize
    from ..models import load_model, load_tokenizer

    if args.base or args.merge:
        raise ValueError("--base/--merge apply to a run directory: `memfit eval RUN_DIR --merge`")
    settings = _settings(args, FOLDER_DEFAULTS)
    tokenizer = load_tokenizer(args.model)
    records, issues = load_records([PdfSource(path=args.data)])
    for issue in issues:
        log.warning("skipped %s", issue)
    if not records:
        raise ValueError(f"none of the PDFs in {args.data} gave usable text: pass a folder of text PDFs")
    rows = [{"name": r.file, "input_ids": ids, "n_bytes": len(r.text.encode("utf-8"))}
            for r, ids in zip(records, tokenize(tokenizer, [r.text for r in records]))]
    result = _score(load_model(args.model), rows, tokenizer, settings, "model")
    return {**result, "data": args.data, "model": args.model, "documents": [r.file for r in records]}
