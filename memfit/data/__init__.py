"""Sources (PDF folders, text, tables, saved and Hub datasets) -> clean records -> document-level split -> packed
token blocks, through one builder with in-memory or Arrow storage.

    corpus = extract_pdfs("papers/")                 # page texts, cached by sha256; bad files in corpus.errors
    bundle = build_datasets(corpus, tokenizer)       # bundle.train (packed blocks), bundle.test (whole documents)
    print(inspect_corpus("papers/").render())        # artefacts before/after cleaning + split statistics
    bundle, issues = build_bundle([PdfSource(path="papers/"), TableSource(path="qa.jsonl")], tokenizer)
    bundle, issues = build_bundle(sources, tokenizer, storage="arrow", num_proc=8)  # larger than memory
    bundle.loss_tokens                               # "all" | "assistant" | "mixed": what the loss counts

Layout: pdf/ (reading and cleaning PDFs), text/ (checks on every text: files, binary, duplicates, language),
arrow/ (records, tokens and their verified cache files), sources.py + readers.py (what to read and how),
bundle.py (the builder), packing.py (the one packer), split.py, chat.py (assistant-only labels).
"""
from __future__ import annotations

import importlib
from typing import Any

# name -> module: imported on first use (PEP 562), so `memfit.data.sources` (what config parsing and `--help` need)
# does not pull in datasets, pyarrow, pypdf or torch
_EXPORTS = {
    "IGNORE_INDEX": "memfit.core.loss",
    "tokenize": "memfit.data.arrow.tokens",
    "build_bundle": "memfit.data.bundle",
    **dict.fromkeys(["DataBundle", "SplitStats", "test_split_hashes"], "memfit.data.bundle_parts"),
    "tokenize_chat": "memfit.data.chat",
    **dict.fromkeys(["CleanDocument", "build_datasets", "clean_documents"], "memfit.data.documents"),
    **dict.fromkeys(["DataError", "FileIssue"], "memfit.data.errors"),
    **dict.fromkeys(["InspectReport", "inspect_corpus"], "memfit.data.inspection"),
    **dict.fromkeys(["pack_documents", "pack_samples"], "memfit.data.packing"),
    **dict.fromkeys(["CleanOptions", "clean_document", "clean_pages"], "memfit.data.pdf.clean"),
    **dict.fromkeys(["Corpus", "Document", "Page", "extract_pdfs"], "memfit.data.pdf.extract"),
    **dict.fromkeys(["iter_records", "load_records"], "memfit.data.readers"),
    **dict.fromkeys(["HubSource", "PdfSource", "Record", "SavedSource", "Source", "TableSource", "TextSource",
                     "check_output_outside_sources", "source_keys_help"], "memfit.data.sources"),
    **dict.fromkeys(["SplitPlan", "split_documents"], "memfit.data.split"),
    "check_language": "memfit.data.text.language",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'memfit.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
