"""What `memfit data inspect DIR` reports: per-file artefact counts before -> after cleaning, skipped files and split
statistics (the command itself: memfit/cli/data.py)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memfit.data.pdf.artifacts import ARTIFACTS, measure_document
from memfit.data.pdf.clean import CleanOptions
from memfit.data.bundle_parts import SplitStats, format_split_stats
from memfit.data.documents import CleanDocument, build_datasets
from memfit.data.errors import DataError
from memfit.data.pdf.extract import Corpus, Document, extract_pdfs
from memfit.data.split import SplitPlan, split_documents


@dataclass(frozen=True)
class FileReport:
    name: str
    pages: int
    raw_chars: int
    clean_chars: int
    before: dict[str, int]
    after: dict[str, int]
    english_ratio: float
    status: str  # "kept" or the kind of issue that left it out


@dataclass
class InspectReport:
    corpus: Corpus
    files: list[FileReport]
    plan: SplitPlan | None
    split_stats: dict[str, SplitStats]
    block_size: int
    seed: int
    tokenizer: str | None
    notes: list[str] = field(default_factory=list)

    def residue(self) -> dict[str, int]:
        """Artefacts left after cleaning, summed over the kept documents."""
        return {a.key: sum(f.after[a.key] for f in self.files if f.status == "kept") for a in ARTIFACTS}

    def render(self) -> str:
        return render_report(self)

    def __str__(self) -> str:
        return self.render()


def _file_report(doc: Document, status: str, options: CleanOptions) -> tuple[FileReport, CleanDocument]:
    measured = measure_document(doc.pages, options)
    report = FileReport(doc.name, doc.n_pages, measured.raw_chars, len(measured.clean_text), measured.before,
                        measured.after, doc.language().ratio, status)
    return report, CleanDocument(doc.name, measured.clean_text, doc.n_pages)


def inspect_corpus(pdf_dir: Path | str, *, cache_dir: Path | str | None = None, tokenizer: Any = None,
                   block_size: int = 512, seed: int = 0, test_fraction: float = 0.2, min_test_docs: int = 1,
                   validation_fraction: float = 0.0, options: CleanOptions = CleanOptions(),
                   keep_non_english: bool = False, **extract_kwargs: Any) -> InspectReport:
    """Extract (through the text cache), clean and measure every PDF, then plan the split as `build_datasets` would."""
    corpus = extract_pdfs(pdf_dir, cache_dir, keep_non_english=keep_non_english, **extract_kwargs)
    kinds = {issue.path.name: issue.kind for issue in corpus.errors}
    files, clean_docs = [], []
    for doc in sorted(corpus.documents + corpus.excluded, key=lambda d: d.name):
        report, clean = _file_report(doc, kinds.get(doc.name, "kept"), options)
        files.append(report)
        if report.status == "kept":
            clean_docs.append(clean)
    split_args = dict(test_fraction=test_fraction, min_test_docs=min_test_docs,
                      validation_fraction=validation_fraction, seed=seed)
    report = InspectReport(corpus, files, None, {}, block_size, seed, None)
    if not clean_docs:
        report.notes.append("no usable documents: nothing to split")
        return report
    try:
        _add_split(report, clean_docs, tokenizer, block_size, options, split_args)
    except DataError as exc:  # e.g. a folder with one PDF: the extraction report is still what the user wants
        report.notes.append(f"no split: {exc}")
    return report


def _add_split(report, clean_docs, tokenizer, block_size, options, split_args) -> None:
    if tokenizer is not None:
        bundle = build_datasets(clean_docs, tokenizer, block_size=block_size, clean_options=options, verbose=False,
                                **split_args)
        report.plan, report.split_stats = bundle.plan, bundle.stats
        report.tokenizer = getattr(tokenizer, "name_or_path", None) or str(tokenizer)
    else:
        report.plan = split_documents([d.name for d in clean_docs], **split_args)
        for split in ("train", "validation", "test"):
            docs = [d for d in clean_docs if d.name in getattr(report.plan, split)]
            if docs or split != "validation":
                report.split_stats[split] = SplitStats(len(docs), sum(d.n_pages for d in docs),
                                                       sum(len(d.text) for d in docs))
        report.notes.append("token and block counts need a tokenizer (--tokenizer PATH)")


def _cell(before: int, after: int) -> str:
    return f"{before}>{after}" if before or after else "."


def render_report(report: InspectReport) -> str:
    headers = ["file", "pages", "kchars", *(a.label for a in ARTIFACTS), "en%", "status"]
    rows = [[f.name, str(f.pages), f"{f.raw_chars / 1000:.0f}>{f.clean_chars / 1000:.0f}",
             *(_cell(f.before[a.key], f.after[a.key]) for a in ARTIFACTS), f"{f.english_ratio:.0%}", f.status]
            for f in report.files]
    kept = [f for f in report.files if f.status == "kept"]
    rows.append(["TOTAL (kept)", str(sum(f.pages for f in kept)),
                 f"{sum(f.raw_chars for f in kept) / 1000:.0f}>{sum(f.clean_chars for f in kept) / 1000:.0f}",
                 *(_cell(sum(f.before[a.key] for f in kept), sum(f.after[a.key] for f in kept)) for a in ARTIFACTS),
                 "", ""])
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]

    def fmt(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

    lines = [f"Artefacts in {report.corpus.directory} (before>after cleaning; '.' = none):", fmt(headers),
             "-" * len(fmt(headers)), *map(fmt, rows[:-1]), "-" * len(fmt(headers)), fmt(rows[-1])]
    lines.append("ligat: ligature characters (ﬁ ﬂ ...); glyph: glyph-name ligatures (/f_i); hyph: end-of-line "
                 "hyphenations; runhdr: repeated header/footer lines (re-detected); knownhdr: the manifest's header "
                 "strings; lineno: draft line numbers; U+FFFD: replacement characters; dots: dot leaders; ws: runs of "
                 "spaces / non-breaking spaces; en%: share of common English words.")
    if report.corpus.errors:
        lines += ["", f"Skipped files ({len(report.corpus.errors)}):"]
        lines += [f"  {issue.path.name} [{issue.kind}]: {issue.reason}" for issue in report.corpus.errors]
    if report.corpus.not_read:
        lines += ["", f"Not read ({len(report.corpus.not_read)}):"]
        lines += [f"  {issue.path.name}: {issue.reason}" for issue in report.corpus.not_read]
    if report.corpus.warnings:
        lines += ["", "Warnings:"] + [f"  {issue.path.name} [{issue.kind}]: {issue.reason}"
                                      for issue in report.corpus.warnings]
    if report.split_stats:
        tokenizer = f", tokenizer {report.tokenizer}" if report.tokenizer else ""
        lines += ["", f"Split by document (seed {report.seed}{tokenizer}):",
                  format_split_stats(report.split_stats, report.block_size if report.tokenizer else None)]
        for split in ("validation", "test"):
            names = getattr(report.plan, split) if report.plan else []
            if names:
                lines.append(f"{split} documents: {', '.join(names)}")
    lines += [f"note: {note}" for note in report.notes]
    return "\n".join(lines)
