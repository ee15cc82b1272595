"""Clean documents -> document-level split -> packed training blocks and whole-document evaluation sets."""
from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from datasets import Dataset

from memfit.data.pdf.clean import CleanOptions
from memfit.data.errors import DataError
from memfit.data.pdf.extract import Corpus, Document
from memfit.data.packing import IGNORE_INDEX, pack_documents
from memfit.data.split import SplitPlan, split_documents

log = logging.getLogger(__name__)
SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class SplitStats:
    documents: int
    pages: int
    characters: int
    tokens: int | None = None  # document tokens, without the EOS separators
    blocks: int | None = None  # train: packed blocks; eval splits: ceil(tokens / block_size) windows
    target_tokens: int | None = None  # train: labels != -100 that the shifted loss uses


@dataclass
class DataBundle:
    """What training and evaluation consume. `test`/`validation` rows are whole documents: name, input_ids, n_bytes."""

    train: Dataset
    test: Dataset
    validation: Dataset | None
    documents: Dataset  # every clean document: name, text, n_pages, split
    plan: SplitPlan
    block_size: int
    eos_token_id: int
    stats: dict[str, SplitStats] = field(default_factory=dict)

    def format_stats(self) -> str:
        return format_split_stats(self.stats, self.block_size)


def format_split_stats(stats: Mapping[str, SplitStats], block_size: int | None = None) -> str:
    def cell(value: int | None) -> str:
        return "-" if value is None else f"{value:,}"

    total_chars = sum(s.characters for s in stats.values()) or 1
    header = f"{'split':<11}{'docs':>6}{'pages':>8}{'chars':>12}{'chars %':>9}{'tokens':>11}{'blocks':>9}"
    lines = [header, "-" * len(header)]
    for name, s in stats.items():
        lines.append(f"{name:<11}{s.documents:>6}{s.pages:>8,}{s.characters:>12,}{s.characters / total_chars:>9.1%}"
                     f"{cell(s.tokens):>11}{cell(s.blocks):>9}")
    if block_size:
        lines.append(f"blocks of {block_size} tokens; train blocks are packed (EOS between documents, padding "
                     "only at the end), test/validation stay whole documents (blocks = windows to cover them).")
    return "\n".join(lines)


@dataclass(frozen=True)
class CleanDocument:
    name: str
    text: str
    n_pages: int


Source = Corpus | Iterable[Document | CleanDocument] | Mapping[str, str]


def clean_documents(source: Source, options: CleanOptions = CleanOptions()) -> list[CleanDocument]:
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


def _load_tokenizer(tokenizer: Any) -> Any:
    if isinstance(tokenizer, str):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(tokenizer)
    return tokenizer


def tokenize(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    """No special tokens (EOS is added by packing); verbose=False silences the longer-than-model-max warning,
    which does not apply because nothing is fed to the model unpacked."""
    if not texts:
        return []
    return [list(ids) for ids in tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]]


def build_datasets(corpus_or_documents: Source, tokenizer: Any, *, block_size: int = 512,
                   test_fraction: float = 0.2, min_test_docs: int = 1, validation_fraction: float = 0.0,
                   min_validation_docs: int = 1, seed: int = 0, drop_references: bool = False,
                   clean_options: CleanOptions | None = None, verbose: bool = True) -> DataBundle:
    """Split by document (deterministic by `seed`), pack train into blocks, keep test/validation as whole documents.

    `tokenizer` is any HF tokenizer (or a path for `AutoTokenizer`); its EOS separates packed documents.
    """
    tokenizer = _load_tokenizer(tokenizer)
    eos = tokenizer.eos_token_id
    if eos is None:
        raise DataError("the tokenizer has no eos_token, which packing needs between documents; set "
                        "tokenizer.eos_token (e.g. to '</s>') before building the datasets.")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    options = clean_options or CleanOptions(drop_references=drop_references)
    docs = clean_documents(corpus_or_documents, options)
    if not docs:
        raise DataError("no documents with text to build datasets from; check corpus.errors for the skipped files.")
    plan = split_documents([d.name for d in docs], test_fraction=test_fraction, min_test_docs=min_test_docs,
                           validation_fraction=validation_fraction, min_validation_docs=min_validation_docs, seed=seed)
    by_split = {split: [d for d in docs if d.name in set(getattr(plan, split))] for split in SPLITS}
    tokens = {split: tokenize(tokenizer, [d.text for d in by_split[split]]) for split in SPLITS}

    packed = pack_documents(tokens["train"], block_size, eos, pad)
    train = Dataset.from_dict(packed)
    evaluation = {split: Dataset.from_dict({
        "name": [d.name for d in by_split[split]],
        "input_ids": tokens[split],
        "n_bytes": [len(d.text.encode("utf-8")) for d in by_split[split]],
    }) for split in ("validation", "test")}
    documents = Dataset.from_dict({"name": [d.name for d in docs], "text": [d.text for d in docs],
                                   "n_pages": [d.n_pages for d in docs], "split": [plan.of(d.name) for d in docs]})

    stats = {}
    for split in SPLITS:
        if split == "validation" and not by_split[split]:
            continue
        n_tokens = sum(map(len, tokens[split]))
        blocks = len(train) if split == "train" else math.ceil(n_tokens / block_size)
        targets = sum(label != IGNORE_INDEX for block in packed["labels"] for label in block[1:]) \
            if split == "train" else None
        stats[split] = SplitStats(len(by_split[split]), sum(d.n_pages for d in by_split[split]),
                                  sum(len(d.text) for d in by_split[split]), n_tokens, blocks, targets)
    bundle = DataBundle(train=train, test=evaluation["test"],
                        validation=evaluation["validation"] if validation_fraction else None, documents=documents,
                        plan=plan, block_size=block_size, eos_token_id=eos, stats=stats)
    log.info("datasets:\n%s", bundle.format_stats())
    if verbose:
        print(bundle.format_stats())
    return bundle
