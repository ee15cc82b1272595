"""The fine-tune job's datasets, built from its `sources` by the one bundle builder (a `pdf_dir` setting is one PDF
source by then: memfit/recipes/sections.py), and the evaluation sample of its test documents."""
from __future__ import annotations

import hashlib
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Optional

from ..data import build_bundle, test_split_hashes
from ..data.bundle_parts import default_num_proc, wants_arrow

if TYPE_CHECKING:
    from .sections import DataRequest

SKIPPED_IN_LOG = 20


def finetune_datasets(cfg: "DataRequest", tokenizer: Any, state: Any) -> tuple[Any, dict[str, Any], str]:
    """(DataBundle, the results' "data" entry, a summary for the log: one line, then each skipped input)."""
    sources = cfg.sources
    arrow = wants_arrow(sources) if cfg.arrow_cache is None else cfg.arrow_cache
    num_proc = (cfg.num_proc or default_num_proc(state.device.type == "cuda")) if arrow else 1
    with state.main_process_first():  # rank 0 fills the text (and Arrow) caches, the others read them
        bundle, issues = build_bundle(sources, tokenizer, storage="arrow" if arrow else "memory",
                                      block_size=cfg.seq_len, test_fraction=cfg.test_fraction, seed=cfg.seed,
                                      text_cache=cfg.text_cache, num_proc=num_proc,
                                      train_on_inputs=cfg.train_on_inputs, packing=cfg.packing,
                                      validation_fraction=cfg.validation_fraction)
    per_source = {}
    for row in bundle.documents.select_columns(["source", "split"]):
        counts = per_source.setdefault(row["source"], {"train": 0, "test": 0})
        counts[row["split"]] = counts.get(row["split"], 0) + 1
    entries = [f"{row['name']}:{hashlib.sha256(row['text'].encode('utf-8')).hexdigest()}"
               for row in bundle.documents.select_columns(["name", "text"])]
    summary = (f"{len(bundle.documents)} documents from {len(sources)} sources, {len(issues)} inputs skipped"
               + (", tokenised through the Arrow cache" if arrow else ""))
    # each skipped input named with its reason and fix (a mixed PDF folder's other files say how to include them);
    # a long list is cut in the log, never in results.json
    summary += "".join(f"\n  {issue}" for issue in issues[:SKIPPED_IN_LOG])
    if len(issues) > SKIPPED_IN_LOG:
        summary += f"\n  ... and {len(issues) - SKIPPED_IN_LOG} more (results.json: data.skipped)"
    return bundle, {
        "sources": [s.model_dump() for s in sources], "documents": len(bundle.documents), "arrow": arrow,
        "per_source": per_source, "skipped": [str(i) for i in issues],
        # one hash over every document's name and content: a changed, added or removed file changes the run's identity
        "sha256": hashlib.sha256("\n".join(sorted(entries)).encode()).hexdigest(),
        "split": {k: asdict(v) for k, v in bundle.stats.items()}, "test_documents": list(bundle.plan.test),
        "validation_documents": list(bundle.plan.validation), "packed": bundle.packed, "chat": bundle.chat,
        "loss_tokens": bundle.loss_tokens,  # what the training loss counted: all | assistant | mixed
        "test_sha256": dict(test_split_hashes(bundle))}, summary  # {document name: sha256 of its text}


def sample_documents(test, tokenizer, max_tokens: Optional[int], chunk: int,
                     split: str = "test") -> tuple[list[dict], dict[str, Any]]:
    """Whole documents of the `split` (test or validation), or (when they hold more than `max_tokens`) evenly spaced
    `chunk`-token pieces of them, so a capped evaluation still covers every part of every document. A piece's bytes
    are those of its decoded text (exact for byte-level tokenizers, up to a split character at a piece edge)."""
    docs = [dict(row) for row in test]
    total = sum(len(d["input_ids"]) for d in docs)
    if not max_tokens or total <= max_tokens:
        return docs, {"sampled": False, f"{split}_tokens": total, "scored_documents": len(docs)}
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
    info = {"sampled": True, f"{split}_tokens": total, "pieces": n, "piece_tokens": chunk,
            "note": f"{n} evenly spaced {chunk}-token pieces of the {split} documents (eval_max_tokens={max_tokens}); "
                    "the same pieces before and after training"}
    return pieces, info
