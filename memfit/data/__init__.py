"""PDF folder -> clean text -> document-level split -> packed token blocks.

    corpus = extract_pdfs("papers/")                 # page texts, cached by sha256; bad files in corpus.errors
    bundle = build_datasets(corpus, tokenizer)       # bundle.train (packed blocks), bundle.test (whole documents)
    print(inspect_corpus("papers/").render())        # artefacts before/after cleaning + split statistics
    bundle, issues = build_source_datasets([PdfSource(path="papers/"), TableSource(path="qa.jsonl", format="chat")],
                                           tokenizer)  # several sources, one split; chat labels only the assistant
    bundle, issues = build_arrow_datasets(sources, tokenizer, num_proc=8)  # the same, larger than memory: Arrow cache
"""
from memfit.data.pdf.clean import CleanOptions, clean_document, clean_pages
from memfit.data.bundle import CleanDocument, DataBundle, SplitStats, build_datasets, clean_documents, tokenize
from memfit.data.errors import DataError, FileIssue
from memfit.data.pdf.extract import Corpus, Document, Page, extract_pdfs
from memfit.data.inspection import InspectReport, inspect_corpus, inspect_main
from memfit.data.text.language import check_language
from memfit.data.packing import IGNORE_INDEX, pack_documents
from memfit.data.split import SplitPlan, split_documents
from memfit.data.chat import pack_samples, tokenize_chat
from memfit.data.mixture import build_source_datasets, test_split_hashes
from memfit.data.arrow.bundle import build_arrow_datasets
from memfit.data.readers import iter_records, load_records
from memfit.data.sources import (HubSource, PdfSource, Record, SavedSource, Source, TableSource, TextSource,
                                 check_output_outside_sources)

__all__ = [
    "IGNORE_INDEX", "CleanDocument", "CleanOptions", "Corpus", "DataBundle", "DataError", "Document", "FileIssue",
    "InspectReport", "Page", "clean_documents", "tokenize", "SplitPlan", "SplitStats", "build_datasets", "check_language", "clean_document",
    "clean_pages", "extract_pdfs", "inspect_corpus", "inspect_main", "pack_documents", "split_documents",
    "HubSource", "PdfSource", "Record", "SavedSource", "Source", "TableSource", "TextSource", "build_source_datasets",
    "load_records", "iter_records", "check_output_outside_sources", "pack_samples", "test_split_hashes",
    "tokenize_chat", "build_arrow_datasets",
]
