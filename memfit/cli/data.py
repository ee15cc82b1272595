"""`memfit data inspect PATH` (what a source holds: extraction artefacts, skipped input, split statistics) and
`memfit data fetch CORPUS DIR` (download a pinned corpus, verified by sha256)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .options import EffectiveDefaults


def _inspect_arguments(parser: argparse.ArgumentParser) -> None:
    from ..data.pdf.extract import DEFAULT_MAX_PAGES, DEFAULT_TIMEOUT_S

    parser.add_argument("pdf_dir", metavar="PATH", help="folder of PDFs, or a text/table file, text folder or "
                                                         "save_to_disk folder (per-source statistics)")
    parser.add_argument("--text-column", default="text", help="table/saved sources: the text column")
    parser.add_argument("--format", default="auto", choices=["auto", "text", "chat", "prompt_completion"],
                        help="table/saved sources: 'auto' detects a messages column (chat) or prompt + completion "
                             "columns, else reads the text column")
    parser.add_argument("--tokenizer", metavar="PATH", help="HF tokenizer (folder or hub id) for token/block counts")
    parser.add_argument("--block-size", type=int, default=512, help="tokens per block in the statistics")
    parser.add_argument("--seed", type=int, default=0, help="seed of the document split")
    parser.add_argument("--test-fraction", type=float, default=0.2, help="share of documents held out for testing")
    parser.add_argument("--validation-fraction", type=float, default=0.0,
                        help="share of documents held out for validation")
    parser.add_argument("--cache-dir", help="text cache (default $MEMFIT_CACHE/text)")
    parser.add_argument("--drop-references", action="store_true", help="cut bibliography sections")
    parser.add_argument("--keep-non-english", action="store_true", help="keep documents flagged as not English")
    parser.add_argument("--max-file-mb", type=float, default=512.0, help="larger PDFs are skipped, named")
    parser.add_argument("--max-pages", type=int, default=DEFAULT_MAX_PAGES, help="longer PDFs are skipped, named")
    parser.add_argument("--timeout-s", type=float, default=DEFAULT_TIMEOUT_S, help="per-file extraction limit")


def _fetch_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("corpus", help="corpus name, e.g. climate")
    parser.add_argument("dir", type=Path, help="folder to download into (created if missing)")
    parser.add_argument("--mirror", help="base address of a server that serves the files by name (default: the "
                                         "pinned GitHub sources)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds without data before a transfer is "
                                                                    "retried")


def _fail(exc: Exception) -> int:
    print(f"memfit data: {exc}", file=sys.stderr)
    return 2


def run_inspect(args: argparse.Namespace) -> int:
    from ..data import CleanOptions, DataError, inspect_corpus
    from ..data.pdf.reader import MIB
    from ..data.source_stats import is_pdf_folder, render_source_stats, source_for_path

    tokenizer = None
    if args.tokenizer:
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
        except (OSError, ValueError) as exc:
            return _fail(f"cannot load a tokenizer from {args.tokenizer}: {exc}")
    try:
        if not is_pdf_folder(args.pdf_dir):
            print(render_source_stats([source_for_path(args.pdf_dir, args.text_column, args.format)]))
            return 0
        report = inspect_corpus(
            args.pdf_dir, cache_dir=args.cache_dir, tokenizer=tokenizer, block_size=args.block_size, seed=args.seed,
            test_fraction=args.test_fraction, validation_fraction=args.validation_fraction,
            options=CleanOptions(drop_references=args.drop_references), keep_non_english=args.keep_non_english,
            max_file_bytes=int(args.max_file_mb * MIB), max_pages=args.max_pages, timeout_s=args.timeout_s)
    except DataError as exc:
        return _fail(exc)
    print(report.render())
    return 0


def run_fetch(args: argparse.Namespace) -> int:
    from ..data import DataError
    from ..data.fetch import fetch_corpus

    try:
        report = fetch_corpus(args.corpus, args.dir, args.mirror, args.timeout)
    except DataError as exc:
        return _fail(exc)
    for name in report.fetched:
        print(f"fetched  {name}")
    for name in report.skipped:
        print(f"ok       {name} (already present, checksum matches)")
    for name, reason in report.failed.items():
        print(f"FAILED   {name}: {reason}", file=sys.stderr)
    total = len(report.fetched) + len(report.skipped) + len(report.failed)
    print(f"{len(report.fetched) + len(report.skipped)}/{total} files verified in {args.dir}")
    return 1 if report.failed else 0


def data_parser() -> argparse.ArgumentParser:
    from ..data.sources import source_keys_help

    parser = argparse.ArgumentParser(prog="memfit data", description=__doc__, epilog=source_keys_help(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True, metavar="{inspect,fetch}")
    inspect = sub.add_parser("inspect", help="what a PDF folder, text folder or table holds: artefacts before/after "
                                             "cleaning, skipped input, split statistics",
                             description="per-file artefact counts, skipped files and split statistics of PATH",
                             formatter_class=EffectiveDefaults)
    _inspect_arguments(inspect)
    inspect.set_defaults(run=run_inspect)
    fetch = sub.add_parser("fetch", help="download a corpus (e.g. climate) from its pinned sources, verified by "
                                         "sha256; rerun to resume", description="download a corpus from its pinned "
                                                                                "public sources, verified by sha256",
                          formatter_class=EffectiveDefaults)
    _fetch_arguments(fetch)
    fetch.set_defaults(run=run_fetch)
    return parser


def data_main(argv: list[str]) -> int:
    """Entry point of `memfit data ...`; returns the exit code (2 when the input as a whole is unusable)."""
    parser = data_parser()
    if not argv:  # `memfit data` alone: its help (listing inspect and fetch), not an error
        parser.print_help()
        return 0
    args = parser.parse_args(argv)
    return args.run(args)


def inspect_main(argv: list[str]) -> int:
    return data_main(["inspect", *argv])


def fetch_main(argv: list[str]) -> int:
    return data_main(["fetch", *argv])
