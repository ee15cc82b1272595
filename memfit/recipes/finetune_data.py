"""The fine-tune job's datasets: from its `sources`, or from `pdf_dir` (the shorthand for one PDF source, kept on
today's PDF pipeline so its messages and results fields stay as they were)."""
from __future__ import annotations

import hashlib
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Optional

from ..data import DataError, PdfSource, build_bundle, build_datasets, extract_pdfs, test_split_hashes
from ..data.bundle_parts import default_num_proc, wants_arrow

if TYPE_CHECKING:
    from .sections import DataRequest


def load_corpus(pdf_dir: str, cache: Optional[str], keep_non_english: bool = False):
    try:
        corpus = extract_pdfs(pdf_dir, cache, keep_non_english=keep_non_english)
    except DataError as exc:
        raise DataError(f"{exc}\nThe example needs a folder of text PDFs: put them in {pdf_dir} or pass "
                        f"--pdf-dir DIR (the full climate corpus: `memfit data fetch climate data/climate`, then "
                        f"--pdf-dir data/climate).") from None
    if not corpus.documents:
        raise DataError(f"none of the PDFs in {pdf_dir} gave usable text:\n{corpus.summary()}")
    return corpus


def finetune_datasets(cfg: "DataRequest", tokenizer: Any, state: Any) -> tuple[Any, dict[str, Any], str]:
    """(DataBundle, the results' "data" entry, a one-paragraph summary for the log)."""
    arrow = cfg.arrow_cache
    sources = cfg.sources or ([PdfSource(path=cfg.pdf_dir)] if arrow else [])
    if sources:
        arrow = wants_arrow(sources) if arrow is None else arrow
        num_proc = (cfg.num_proc or default_num_proc(state.device.type == "cuda")) if arrow else 1
        with state.main_process_first():  # rank 0 fills the text (and Arrow) caches, the others read them
            bundle, issues = build_bundle(sources, tokenizer, storage="arrow" if arrow else "memory",
                                          block_size=cfg.seq_len, test_fraction=cfg.test_fraction, seed=cfg.seed,
                                          text_cache=cfg.text_cache, num_proc=num_proc,
                                          train_on_inputs=cfg.train_on_inputs)
        per_source = {}
        for row in bundle.documents.select_columns(["source", "split"]):
            counts = per_source.setdefault(row["source"], {"train": 0, "test": 0})
            counts[row["split"]] = counts.get(row["split"], 0) + 1
        entries = [f"{row['name']}:{hashlib.sha256(row['text'].encode('utf-8')).hexdigest()}"
                   for row in bundle.documents.select_columns(["name", "text"])]
        data = {"sources": [s.model_dump() for s in sources], "documents": len(bundle.documents), "arrow": arrow,
                "per_source": per_source, "skipped": [str(i) for i in issues]}
        summary = (f"{len(bundle.documents)} documents from {len(sources)} sources, {len(issues)} inputs skipped"
                   + (", tokenised through the Arrow cache" if arrow else ""))
    else:
        with state.main_process_first():
            corpus = load_corpus(cfg.pdf_dir, cfg.text_cache, cfg.keep_non_english)
        bundle = build_datasets(corpus, tokenizer, block_size=cfg.seq_len, test_fraction=cfg.test_fraction,
                                seed=cfg.seed, verbose=False)
        entries = [f"{d.name}:{d.sha256}" for d in corpus.documents]
        data = {"pdf_dir": str(cfg.pdf_dir), "documents": len(corpus.documents),
                "skipped_files": [str(e) for e in corpus.errors], "not_read": [str(e) for e in corpus.not_read],
                "text_from_cache": sum(d.from_cache for d in corpus.documents)}
        summary = corpus.summary()
    # one hash over every document's name and content: a changed, added or removed file changes the run's identity
    data["sha256"] = hashlib.sha256("\n".join(sorted(entries)).encode()).hexdigest()
    data |= {"split": {k: asdict(v) for k, v in bundle.stats.items()}, "test_documents": list(bundle.plan.test),
             "loss_tokens": bundle.loss_tokens,  # what the training loss counted: all | assistant | mixed
             "test_sha256": dict(test_split_hashes(bundle))}  # {document name: sha256 of its text}
    return bundle, data, summary


def sample_documents(test, tokenizer, max_tokens: Optional[int], chunk: int) -> tuple[list[dict], dict[str, Any]]:
    """Whole test documents, or (when they hold more than `max_tokens`) evenly spaced `chunk`-token pieces of them,
    so a capped evaluation still covers every part of every test document. A piece's bytes are those of its decoded
    text (exact for byte-level tokenizers, up to a split character at a piece edge)."""
    docs = [dict(row) for row in test]
    total = sum(len(d["input_ids"]) for d in docs)
    if not max_tokens or total <= max_tokens:
        return docs, {"sampled": False, "test_tokens": total, "scored_documents": len(docs)}
    starts = [(d, s) for d in docs for s in range(0, len(d["input_ids"]) - 1, chunk)]
    n = max(1, min(len(starts), max_tokens // chunk))
    picked = [starts[int(i * len(starts) / n)] for i in range(n)]
    pieces = []
    for doc, s in picked:
        ids = doc["input_ids"][s:s + chunk]
        piece = {"name": f"{doc['name']}@{s}", "input_ids": ids, "n_bytes": len(tokenizer.decode(ids).encode("utf-8"))}
        if "labels" in doc:  # the label mask training scored (assistant tokens of chat samples) travels with the piece
            piece["labels"] = doc["labels"][s:s + chunk]
        pieces.append(piece)
    info = {"sampled": True, "test_tokens": total, "pieces": n, "piece_tokens": chunk,
            "note": f"{n} evenly spaced {chunk}-token pieces of the test documents (eval_max_tokens={max_tokens}); "
                    "the same pieces before and after training"}
    return pieces, info
