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
from memfit.core.loss import IGNORE_INDEX
from memfit.data.arrow.tokens import tokenize
from memfit.data.bundle import build_arrow_datasets, build_bundle, build_source_datasets
from memfit.data.bundle_parts import DataBundle, SplitStats, test_split_hashes
from memfit.data.chat import tokenize_chat
from memfit.data.documents import CleanDocument, build_datasets, clean_documents
from memfit.data.errors import DataError, FileIssue
from memfit.data.inspection import InspectReport, inspect_corpus
from memfit.data.packing import pack_documents, pack_samples
from memfit.data.pdf.clean import CleanOptions, clean_document, clean_pages
from memfit.data.pdf.extract import Corpus, Document, Page, extract_pdfs
from memfit.data.readers import iter_records, load_records
from memfit.data.sources import (HubSource, PdfSource, Record, SavedSource, Source, TableSource, TextSource,
                                 check_output_outside_sources)
from memfit.data.split import SplitPlan, split_documents
from memfit.data.text.language import check_language

__all__ = [
    "IGNORE_INDEX", "CleanDocument", "CleanOptions", "Corpus", "DataBundle", "DataError", "Document", "FileIssue",
    "HubSource", "InspectReport", "Page", "PdfSource", "Record", "SavedSource", "Source", "SplitPlan", "SplitStats",
    "TableSource", "TextSource", "build_arrow_datasets", "build_bundle", "build_datasets", "build_source_datasets",
    "check_language", "check_output_outside_sources", "clean_document", "clean_documents", "clean_pages",
    "extract_pdfs", "inspect_corpus", "iter_records", "load_records", "pack_documents", "pack_samples",
    "split_documents", "test_split_hashes", "tokenize", "tokenize_chat",
]
