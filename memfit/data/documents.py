"""Documents handed over directly (a PDF `Corpus`, cleaned documents, or a `{name: text}` mapping) -> the one bundle
builder, named by their own names: what `memfit data inspect --tokenizer` and the benchmarks use.

    bundle = build_datasets(corpus, tokenizer, block_size=512, validation_fraction=0.1)
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Union

from memfit.data.bundle import build_bundle
from memfit.data.bundle_parts import DataBundle
from memfit.data.errors import DataError
from memfit.data.pdf.clean import CleanOptions
from memfit.data.pdf.extract import Corpus, Document
from memfit.data.sources import Record

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CleanDocument:
    name: str
    text: str
    n_pages: int


Documents = Union[Corpus, Iterable[Union[Document, CleanDocument]], Mapping[str, str]]


def clean_documents(source: Documents, options: CleanOptions = CleanOptions()) -> list[CleanDocument]:
    """`Document`s are cleaned; `CleanDocument`s and a `{name: text}` mapping are taken as already clean (a mapping
    counts one page per document). Documents whose text is empty after cleaning are dropped with a warning."""
    if isinstance(source, Mapping):
        docs = [CleanDocument(name, text, 1) for name, text in source.items()]
    else:
        documents = source.documents if isinstance(source, Corpus) else list(source)
        docs = [doc if isinstance(doc, CleanDocument) else CleanDocument(doc.name, doc.clean_text(options), doc.n_pages)
                for doc in documents]
    for doc in docs:
        if not doc.text.strip():
            log.warning("%s has no text left after cleaning; left out of the dataset", doc.name)
    return sorted((doc for doc in docs if doc.text.strip()), key=lambda doc: doc.name)


def build_datasets(corpus_or_documents: Documents, tokenizer: Any, *, block_size: int = 512,
                   test_fraction: float = 0.2, min_test_docs: int = 1, validation_fraction: float = 0.0,
                   min_validation_docs: int = 1, seed: int = 0, drop_references: bool = False,
                   clean_options: CleanOptions | None = None, verbose: bool = True, packing: bool = True) -> DataBundle:
    """Split by document (deterministic by `seed`), pack train into blocks, keep test/validation as whole documents.

    `tokenizer` is any HF tokenizer (or a path for `AutoTokenizer`); its EOS separates packed documents (`packing`
    False: one document per block, padded).
    """
    docs = clean_documents(corpus_or_documents, clean_options or CleanOptions(drop_references=drop_references))
    if not docs:
        raise DataError("no documents with text to build datasets from; check corpus.errors for the skipped files.")
    items = [Record("", doc.name, None, "text", text=doc.text, n_pages=doc.n_pages, given_name=doc.name)
             for doc in docs]
    bundle, _ = build_bundle(None, tokenizer, items=items, block_size=block_size, test_fraction=test_fraction,
                             min_test_docs=min_test_docs, validation_fraction=validation_fraction,
                             min_validation_docs=min_validation_docs, seed=seed, packing=packing)
    log.info("datasets:\n%s", bundle.format_stats())
    if verbose:
        print(bundle.format_stats())
    return bundle
