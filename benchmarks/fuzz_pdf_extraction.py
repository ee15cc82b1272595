"""Byte-level fuzzing of PDF extraction with real corpus PDFs: every mutated file must come back parsed or skipped
with a reason, within the per-file time limit, and the intact control file in each batch must still be extracted.
The limit is CPU time (memfit/data/pdf/isolation.py), so a saturated machine slows the run but costs no file.

    python benchmarks/fuzz_pdf_extraction.py --mutations 500 --out benchmarks/results/fuzz_pdf_extraction.json

Seeds are short excerpts (`--pages` pages from the third on, past the cover pages; rewritten by pypdf with their real fonts and content streams) of
the PDFs in --corpus, so each extraction takes a fraction of a second and 500 of them finish in minutes on one core.
Mutations: random byte flips, truncation, deleted/duplicated chunks, random insertions, and header damage.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from collections import Counter
from pathlib import Path

from pypdf import PdfReader, PdfWriter

from memfit.core.files import atomic_write_json
from memfit.data import extract_pdfs

CORPUS = Path("/work/shared/corpus/climate")


def excerpt(pdf: Path, pages: int) -> bytes:
    reader, writer = PdfReader(pdf), PdfWriter()
    for page in reader.pages[2:2 + pages]:
        writer.add_page(page)
    with tempfile.TemporaryFile() as handle:
        writer.write(handle)
        handle.seek(0)
        return handle.read()


def mutate(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    buf, n = bytearray(data), len(data)
    kind = rng.choice(["flip", "truncate", "delete", "duplicate", "insert", "header"])
    if kind == "flip":
        for _ in range(rng.randint(1, 64)):
            buf[rng.randrange(n)] = rng.randrange(256)
    elif kind == "truncate":
        del buf[rng.randrange(1, n):]
    elif kind == "delete":
        start = rng.randrange(n)
        del buf[start:start + rng.randint(1, 4096)]
    elif kind == "duplicate":
        start = rng.randrange(n)
        chunk = buf[start:start + rng.randint(1, 4096)]
        at = rng.randrange(n)
        buf[at:at] = chunk * rng.randint(1, 8)
    elif kind == "insert":
        at = rng.randrange(n)
        buf[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 512)))
    else:
        buf[rng.randrange(min(16, n))] = rng.randrange(256)
    return kind, bytes(buf)


def fuzz(mutations: int, *, corpus: Path = CORPUS, pages: int = 2, batch: int = 25, timeout_s: float = 10.0,
         seed: int = 0, workers: int = 2, progress: Path | None = None) -> dict:
    """Run the mutations; with `progress`, the report so far is rewritten after every batch."""
    rng = random.Random(seed)
    seeds = {p.name: excerpt(p, pages) for p in sorted(corpus.glob("*.pdf"))}
    outcomes, kinds, reasons, slowest, lost = Counter(), Counter(), Counter(), 0.0, []
    worst = (0.0, "")  # the slowest single file, wall-clock seconds
    load = [os.getloadavg()[0]]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for first in range(0, mutations, batch):
            folder = Path(tmp) / f"batch-{first:05d}"
            folder.mkdir()
            control = next(iter(seeds))
            (folder / "control.pdf").write_bytes(seeds[control])
            names = {}
            for i in range(first, min(first + batch, mutations)):
                source = rng.choice(list(seeds))
                kind, data = mutate(seeds[source], rng)
                name = f"m{i:05d}-{kind}-{Path(source).stem[:24]}.pdf"
                (folder / name).write_bytes(data)
                names[name] = kind
            t = time.perf_counter()
            corpus_out = extract_pdfs(folder, Path(tmp) / f"cache-{first}", timeout_s=timeout_s, workers=workers,
                                      keep_non_english=True)
            slowest = max(slowest, (time.perf_counter() - t) / (len(names) + 1))
            parsed = {d.name for d in corpus_out.documents}
            skipped = {i.path.name: i for i in corpus_out.errors}
            if "control.pdf" not in parsed:
                why = next((f"{i.kind}: {i.reason}" for i in corpus_out.errors if i.path.name == "control.pdf"), "")
                lost.append(f"{folder.name}/control.pdf ({why or 'missing'})")
            worst = max([worst] + [(s, f"{folder.name}/{n}") for n, s in corpus_out.seconds.items()])
            load.append(os.getloadavg()[0])
            for name, kind in names.items():
                kinds[kind] += 1
                if name in parsed:
                    outcomes["parsed"] += 1
                elif name in skipped:
                    outcomes["skipped"] += 1
                    reasons[skipped[name].kind] += 1
                    if not skipped[name].reason:
                        lost.append(f"{name} (skipped without a reason)")
                else:
                    lost.append(name)
            if progress is not None:
                report = _report(sum(outcomes.values()), seeds, pages, timeout_s, outcomes, reasons, kinds, lost,
                                 slowest, worst, load, started)
                atomic_write_json(progress, report)
    return _report(sum(outcomes.values()), seeds, pages, timeout_s, outcomes, reasons, kinds, lost, slowest, worst,
                   load, started)


def _report(mutations, seeds, pages, timeout_s, outcomes, reasons, kinds, lost, slowest, worst, load,
            started) -> dict:
    return {"mutations": mutations, "seed_pdfs": len(seeds), "pages_per_seed": pages,
            "timeout_s": timeout_s, "limit": "CPU time per file, wall-clock backstop x10, retried once alone",
            "outcomes": dict(outcomes), "skip_reasons": dict(reasons), "mutation_kinds": dict(kinds),
            "lost": lost, "mean_seconds_per_file_worst_batch": round(slowest, 3),
            "worst_seconds_one_file": round(worst[0], 2), "worst_file": worst[1],
            "load_average_1min": {"min": min(load), "max": max(load)},
            "seconds": round(time.perf_counter() - started, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mutations", type=int, default=500)
    p.add_argument("--pages", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--corpus", type=Path, default=CORPUS)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/fuzz_pdf_extraction.json"))
    args = p.parse_args()
    report = fuzz(args.mutations, corpus=args.corpus, pages=args.pages, seed=args.seed, progress=args.out)
    atomic_write_json(args.out, report)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
