"""PDF folder -> `Corpus` of documents (page texts with provenance) plus a list of the files that could not be used."""
from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from memfit.data.pdf.text_cache import TextCache
from memfit.data.sources import TABLE_SUFFIXES, TEXT_SUFFIXES, is_notice
from memfit.core.integrity import file_sha256
from memfit.data.pdf.clean import CleanOptions, clean_document
from memfit.data.text.dedupe import Duplicates
from memfit.data.errors import DataError, FileIssue
from memfit.data.pdf.isolation import WALL_FACTOR, Outcome, run_isolated
from memfit.data.text.language import LanguageCheck, check_language
from memfit.data.pdf.reader import MIB, PdfProblem, check_file, read_page_texts

log = logging.getLogger(__name__)

# Generous defaults: a full IPCC assessment report is ~3,000 pages and a few hundred MiB, and pypdf reads ~15
# pages/s on one core. The limits exist to stop crafted files, not to reject real reports.
DEFAULT_MAX_FILE_BYTES = 512 * MIB
DEFAULT_MAX_PAGES = 5_000
DEFAULT_TIMEOUT_S = 600.0
# Fewer visible characters than this per page on average means an image-only (scanned) PDF.
MIN_CHARS_PER_PAGE = 20


@dataclass(frozen=True)
class Page:
    file: str
    number: int  # 1-based, as printed by PDF viewers
    text: str


@dataclass
class Document:
    path: Path
    sha256: str
    pages: list[str]  # raw pypdf text of each page, index 0 = page 1
    from_cache: bool = False
    warnings: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def n_pages(self) -> int:
        return len(self.pages)

    @property
    def raw_text(self) -> str:
        return "\n".join(self.pages)

    def iter_pages(self) -> Iterator[Page]:
        for number, text in enumerate(self.pages, start=1):
            yield Page(self.name, number, text)

    def language(self) -> LanguageCheck:
        return check_language(self.raw_text)

    def clean_text(self, options: CleanOptions = CleanOptions()) -> str:
        return clean_document(self.pages, options)


@dataclass
class Corpus:
    directory: Path
    documents: list[Document]
    errors: list[FileIssue] = field(default_factory=list)  # files left out, with the reason and the fix
    warnings: list[FileIssue] = field(default_factory=list)  # files kept with a caveat
    excluded: list[Document] = field(default_factory=list)  # extracted, but left out for their content (see errors)
    seconds: dict[str, float] = field(default_factory=dict)  # wall-clock pypdf time of each file read this run
    not_read: list[FileIssue] = field(default_factory=list)  # other files of the folder, each with how to include it

    def summary(self) -> str:
        cached = sum(doc.from_cache for doc in self.documents)
        lines = [f"{self.directory}: {len(self.documents)} documents ({cached} from the text cache), "
                 f"{len(self.errors)} files skipped"]
        lines += [f"  skipped {issue}" for issue in self.errors]
        lines += [f"  warning {issue}" for issue in self.warnings]
        lines += [f"  not read {issue}" for issue in self.not_read]
        return "\n".join(lines)


def list_pdfs(pdf_dir: Path | str) -> list[Path]:
    directory = Path(pdf_dir).expanduser()
    if not directory.exists():
        raise DataError(f"PDF directory {directory} does not exist; point --pdf-dir at a folder of .pdf files.")
    if not directory.is_dir():
        raise DataError(f"{directory} is a file, not a directory; put the PDFs in a folder and point --pdf-dir at it.")
    # every entry named *.pdf: folders, broken links and link loops are then listed among the skipped files
    paths = sorted(p for p in directory.iterdir() if p.suffix.lower() == ".pdf")
    if not paths:
        raise DataError(f"no .pdf files in {directory.resolve()}; point --pdf-dir at a folder that contains PDFs "
                        "(sub-folders are not searched).")
    return paths


def other_files(pdf_dir: Path | str) -> list[FileIssue]:
    """Every entry of a PDF folder that the PDF pipeline does not read (hidden files aside), each with how to
    include it: a mixed folder never loses a file without a word."""
    issues = []
    for path in sorted(Path(pdf_dir).expanduser().iterdir()):
        suffix = path.suffix.lower()
        if suffix == ".pdf" or path.name.startswith("."):
            continue
        if path.is_dir():
            how = "a sub-folder (not searched): add a source for it"
        elif is_notice(path):  # named, but not as text the user should convert to train on
            how = "the folder's licence or notice, not training text"
        elif suffix in (*TEXT_SUFFIXES, *TABLE_SUFFIXES):
            kind = "text" if suffix in TEXT_SUFFIXES else "table"
            how = (f"a {kind} file: add a source {{kind: {kind}, path: {path}}}, or read the folder's text and table "
                   f"files too with the source {{kind: pdf, path: {path.parent}, read_other_files: true}}")
        else:
            how = "neither PDF, text nor table: convert it to PDF or text to train on it"
        issues.append(FileIssue(path, "not_read", f"not read by the PDF pipeline - {how}"))
    return issues


def _problem_from_outcome(outcome: Outcome, timeout_s: float) -> PdfProblem:
    if outcome.timed_out and outcome.wall_limited and outcome.cpu_seconds is not None:
        return PdfProblem("timeout", f"extraction took {outcome.seconds:.0f} s wall-clock ({WALL_FACTOR:g} x "
                                     f"timeout_s, twice if retried alone) yet got only {outcome.cpu_seconds:.1f} s "
                                     "of CPU: it hung, or the machine is overloaded - rerun when it is quieter, "
                                     "else re-export the PDF")
    if outcome.timed_out:
        clock = "of CPU time" if outcome.cpu_seconds is not None else "wall-clock"
        return PdfProblem("timeout", f"extraction took longer than {timeout_s:g} s {clock} (timeout_s) and was "
                                     "stopped; the file may be malformed - raise the limit only if it is a large "
                                     "genuine PDF")
    if isinstance(outcome.error, PdfProblem):
        return outcome.error
    if outcome.error is not None:
        return PdfProblem("corrupt", f"pypdf failed ({type(outcome.error).__name__}: {outcome.error}); "
                                     "re-download or re-export the PDF")
    return PdfProblem("crashed", f"the extraction process died (exit code {outcome.exitcode}), e.g. out of memory; "
                                 "the file may be malformed - re-export it")


def _quality_issue(doc: Document, keep_non_english: bool) -> FileIssue | None:
    """Usable-but-suspect content: image-only PDFs and (unless kept) text that is not English."""
    visible = sum(len("".join(page.split())) for page in doc.pages)
    if visible < MIN_CHARS_PER_PAGE * doc.n_pages:
        return FileIssue(doc.path, "no_text",
                         f"no extractable text ({visible} characters on {doc.n_pages} page(s)): a scanned/image-only "
                         "PDF; run OCR first (e.g. `ocrmypdf in.pdf out.pdf`)")
    language = doc.language()
    if not language.is_english:
        action = "kept because keep_non_english is set" if keep_non_english else \
            "left out; pass keep_non_english=True (CLI/example: --keep-non-english) to train on it"
        return FileIssue(doc.path, "non_english", f"text does not look like English: {language.describe()}; "
                                                  f"{action}. A broken font encoding produces the same signal.")
    return None


def _from_cache_or_queue(paths: list[Path], cache: TextCache, max_file_bytes: int,
                         corpus: Corpus) -> tuple[list[Document], list[tuple[Path, str]]]:
    """Cheap checks and the cache lookup: (documents found in the cache, (path, sha256) still to extract)."""
    documents: list[Document] = []
    to_extract: list[tuple[Path, str]] = []
    first_seen: dict[str, Path] = {}
    for path in paths:
        try:
            check_file(path, max_file_bytes)
        except PdfProblem as problem:
            corpus.errors.append(FileIssue(path, problem.kind, problem.reason))
            continue
        try:
            sha256 = file_sha256(path)
        except OSError as exc:  # e.g. removed or made unreadable since check_file
            corpus.errors.append(FileIssue(path, "unreadable", f"cannot be read ({exc.strerror or exc}); fix its "
                                                               "permissions or remove it from the folder"))
            continue
        if sha256 in first_seen:  # the same document twice could land in both train and test
            corpus.errors.append(FileIssue(path, "duplicate", f"same content as {first_seen[sha256].name}; skipped"))
            continue
        first_seen[sha256] = path
        cached = cache.load(sha256)
        if cached is not None:
            documents.append(Document(path, sha256, cached[0], from_cache=True, warnings=cached[1]))
        else:
            to_extract.append((path, sha256))
    to_extract.sort(key=lambda job: -job[0].stat().st_size)  # biggest first: the slowest file never starts last
    return documents, to_extract


def _screen(documents: list[Document], corpus: Corpus, keep_non_english: bool) -> None:
    """Move documents into `corpus.documents`, or into `corpus.excluded` with an error saying why."""
    duplicates = Duplicates()
    for doc in sorted(documents, key=lambda d: d.name):
        issue = _quality_issue(doc, keep_non_english)
        repeated = duplicates.check(doc.raw_text, doc.name) if issue is None else None
        if repeated is not None:
            issue = FileIssue(doc.path, "duplicate", repeated)
        if issue is not None and not (issue.kind == "non_english" and keep_non_english):
            corpus.errors.append(issue)
            corpus.excluded.append(doc)
            continue
        if issue is not None:
            corpus.warnings.append(issue)
        if doc.warnings:
            corpus.warnings.append(FileIssue(doc.path, "pypdf_warning", "extracted, but pypdf reported: "
                                             + "; ".join(doc.warnings) + " - check those pages' text"))
        corpus.documents.append(doc)


def extract_pdfs(pdf_dir: Path | str, cache_dir: Path | str | None = None, *,
                 max_file_bytes: int = DEFAULT_MAX_FILE_BYTES, max_pages: int = DEFAULT_MAX_PAGES,
                 timeout_s: float = DEFAULT_TIMEOUT_S, workers: int | None = None,
                 keep_non_english: bool = False) -> Corpus:
    """Extract every PDF of `pdf_dir` page by page. Bad files land in `corpus.errors`; they never stop the others.

    Each file is read in its own process under `timeout_s`, after size (`max_file_bytes`) and page-count
    (`max_pages`) checks. Page texts are cached under `cache_dir` (default `$MEMFIT_CACHE/text`) by file sha256, so
    re-runs skip pypdf. Documents that do not look English are left out unless `keep_non_english`.
    """
    corpus = Corpus(Path(pdf_dir), documents=[])
    cache = TextCache(cache_dir)
    documents, to_extract = _from_cache_or_queue(list_pdfs(pdf_dir), cache, max_file_bytes, corpus)
    corpus.not_read = other_files(pdf_dir)
    if to_extract:
        log.info("extracting %d PDFs with pypdf (%d from the cache)", len(to_extract), len(documents))
    outcomes = run_isolated(read_page_texts, [(path, max_pages) for path, _ in to_extract],
                            timeout_s=timeout_s, workers=workers)
    for (path, sha256), outcome in zip(to_extract, outcomes):
        corpus.seconds[path.name] = outcome.seconds
        if outcome.ok:
            pages, warnings = outcome.value
            cache.store(sha256, path.name, pages, warnings)
            documents.append(Document(path, sha256, pages, warnings=warnings))
        else:
            problem = _problem_from_outcome(outcome, timeout_s)
            corpus.errors.append(FileIssue(path, problem.kind, problem.reason))
    _screen(documents, corpus, keep_non_english)
    corpus.errors.sort(key=lambda issue: issue.path.name)
    for issue in corpus.errors:
        log.warning("skipped %s", issue)
    return corpus
