"""Tokenising a synthetic corpus through the Arrow path (num_proc 1 and 2, then a cached rerun that also streams every
training block through the loop's DataLoader) against the in-memory path: docs/s, tokens/s and peak RSS.

    python benchmarks/data_scale.py --mb 200 --out benchmarks/results/data_scale.json

Every case runs in a process forked after the imports (importing memfit takes ~30 s on a busy machine), so each
peak RSS (`resource.getrusage`, ru_maxrss) is that case's own, over the RSS it was forked with (`baseline`); the
num_proc workers' peak is reported separately (RUSAGE_CHILDREN: the largest child). The tokenizer is the embedded
SmolLM2's; the synthetic documents are its whole-word tokens drawn with Zipf weights, so characters per token are
close to real English. RSS counts the pages of memory-mapped Arrow
files that were touched (page cache, dropped under memory pressure), so the anonymous RSS at the end of the case
(/proc/self/status RssAnon) is reported too: that is what the process really holds.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import resource
import multiprocessing
import tempfile
import time
from pathlib import Path

def write_corpus(path: Path, megabytes: float, tokenizer, doc_kb: float = 8, seed: int = 0) -> int:
    """A JSONL of {"text"} documents of about `doc_kb` KB each, `megabytes` in all, streamed to disk."""
    rng = random.Random(seed)
    vocab = sorted((tid, tok[1:]) for tok, tid in tokenizer.get_vocab().items()
                   if tok.startswith("Ġ") and tok[1:].isalpha() and tok[1:].islower())
    vocab = [word for _, word in vocab]  # merge order: earlier ids are more frequent words
    cumulative = list(itertools.accumulate(1 / (rank + 10) for rank in range(len(vocab))))  # Zipf; summed once
    written, docs = 0, 0
    with open(path, "w") as handle:
        while written < megabytes * 2**20:
            sentences = [" ".join(rng.choices(vocab, cum_weights=cumulative, k=rng.randint(6, 20))).capitalize() + "."
                         for _ in range(int(doc_kb * 1024 / 80))]
            line = json.dumps({"text": " ".join(sentences)}) + "\n"
            handle.write(line)
            written, docs = written + len(line), docs + 1
    return docs


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def run_case(case: str, corpus: str, tokenizer, cache: str, num_proc: int, block_size: int) -> dict:
    from memfit.data import build_bundle
    from memfit.data.sources import TableSource

    sources = [TableSource(path=corpus)]
    start = time.perf_counter()
    if case == "memory":
        bundle, _ = build_bundle(sources, tokenizer, block_size=block_size)
    else:
        bundle, _ = build_bundle(sources, tokenizer, storage="arrow", block_size=block_size, num_proc=num_proc,
                                 cache_dir=cache)
    seconds = time.perf_counter() - start
    out = {"case": case, "num_proc": num_proc, "seconds": round(seconds, 2), "train_blocks": len(bundle.train)}
    if case == "arrow-rerun":  # training reads: every block once through the loop's own DataLoader
        from memfit.training.loop import make_loader

        start = time.perf_counter()
        batches = sum(1 for _ in make_loader(bundle.train, 8, seed=0))
        out |= {"stream_batches_of_8": batches, "stream_seconds": round(time.perf_counter() - start, 2)}
    docs = bundle.stats["train"].documents + bundle.stats["test"].documents
    tokens = bundle.stats["train"].tokens + bundle.stats["test"].tokens
    return out | {"documents": docs, "tokens": tokens, "docs_per_s": round(docs / seconds, 1),
                  "tokens_per_s": round(tokens / seconds), "peak_rss_mb": round(
                      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                  "workers_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
                  "end_rss_anon_mb": round(_status_kb("RssAnon") / 1024, 1),
                  "end_rss_file_mb": round(_status_kb("RssFile") / 1024, 1)}


def _child(send, *args) -> None:
    send.send(run_case(*args))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=200, help="synthetic corpus size")
    parser.add_argument("--block-size", type=int, default=512)
    parser.add_argument("--num-proc", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", default="benchmarks/results/data_scale.json")
    parser.add_argument("--machine", default="", help="what the numbers were measured on (goes into the JSON)")
    args = parser.parse_args()

    import memfit.data.bundle  # noqa: F401  (the imports every case shares, before forking)
    import memfit.training.loop  # noqa: F401
    from memfit.core.files import atomic_write_text
    from memfit.models import load_tokenizer
    from memfit.plan.planner import versions

    tokenizer = load_tokenizer(None)
    # a forked case starts from the parent's current RSS (its own peak is reset), so that is the baseline
    baseline = {"rss_at_fork_mb": round(_status_kb("VmRSS") / 1024, 1),
                "rss_anon_at_fork_mb": round(_status_kb("RssAnon") / 1024, 1)}
    fork = multiprocessing.get_context("fork")
    with tempfile.TemporaryDirectory(prefix="memfit-data-scale-") as tmp:
        corpus = Path(tmp) / "corpus.jsonl"
        n_docs = write_corpus(corpus, args.mb, tokenizer)
        os.environ["MEMFIT_CACHE"] = tmp
        cases = [("memory", 1)] + [("arrow", n) for n in args.num_proc] + [("arrow-rerun", args.num_proc[-1])]
        rows = []
        for case, num_proc in cases:
            receive, send = fork.Pipe(duplex=False)
            child = fork.Process(target=_child, args=(send, case, str(corpus), tokenizer, f"{tmp}/cache-{num_proc}",
                                                      num_proc, args.block_size))
            child.start()
            send.close()  # so a crashed child ends recv() with EOFError instead of a hang
            rows.append(receive.recv())
            child.join()
            print(rows[-1], flush=True)
    result = {"benchmark": "data_scale", "corpus_mb": args.mb, "corpus_documents": n_docs,
              "block_size": args.block_size, "baseline": baseline,
              "tokenizer": "SmolLM2-135M-Instruct (embedded)",
              "machine": args.machine or f"{os.cpu_count()} CPU cores", "load_average_at_end": os.getloadavg(),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "versions": versions(), "cases": rows}
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
