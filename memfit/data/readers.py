"""Reading sources into `Record`s with provenance: text files, JSONL/CSV/Parquet tables, save_to_disk folders, Hub
datasets and PDF folders, each record checked (regular file, UTF-8, not binary, non-empty chat turns) and every
duplicate of an earlier record dropped before any split.

    records, issues = load_records(sources)

Bad input (a JSONL line that is not JSON, a missing column, an empty or non-UTF-8 file) becomes a `FileIssue`
naming file and line; `on_error="skip"` keeps going (nothing else is lost), `"raise"` stops with a `DataError`.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from itertools import chain
from pathlib import Path
from typing import Any, Optional, Union

from memfit.data.errors import DataError, FileIssue
from memfit.data.sources import (TABLE_SUFFIXES, TEXT_SUFFIXES, HubSource, PdfSource, Record, SavedSource,
                                 TableSource, TextSource, _Columns, _SourceBase, is_notice)
from memfit.data.text.dedupe import Duplicates
from memfit.data.text.hygiene import binary_reason, candidate_files, not_a_regular_file
from memfit.quiet import datasets_bars_off


class _Collector:
    """Issues of one source: each names file and line; `raise` stops at the first."""

    def __init__(self, source: _SourceBase) -> None:
        self.source, self.issues = source, []

    def add(self, path: Any, kind: str, reason: str, line: Optional[int] = None, fatal: bool = True) -> None:
        """`fatal=False`: input skipped by design (a duplicate), reported but never a reason to stop."""
        where = f"line {line}: " if line is not None else ""
        issue = FileIssue(Path(str(path)), kind, f"{where}{reason}")
        if fatal and self.source.on_error == "raise":
            raise DataError(f"{issue} (source {self.source.label}; set on_error='skip' to skip such input)")
        self.issues.append(issue)


def _row_record(src: _Columns, data_format: str, row: dict[str, Any], file: str, line: int,
                issues: _Collector) -> Optional[Record]:
    missing = [c for c in src.columns(data_format) if c not in row or row[c] is None]
    if missing:
        issues.add(file, "missing-column", f"no column {missing[0]!r} (columns: {sorted(row)}); set "
                                           f"{data_format}'s column name (or format) in the source", line)
        return None
    if data_format == "text":
        record = Record(src.label, file, line, "text", text=row[src.text_column])
        texts = {src.text_column: row[src.text_column]}
    elif data_format == "chat":
        turns = row[src.messages_column]
        if not isinstance(turns, list) or not all(isinstance(t, dict) and {"role", "content"} <= set(t)
                                                  for t in turns) or not turns:
            issues.add(file, "bad-messages", f"{src.messages_column!r} must be a list of {{role, content}}", line)
            return None
        texts = {f"turn {i} of {src.messages_column!r}": t["content"] for i, t in enumerate(turns, 1)}
        record = Record(src.label, file, line, "chat",
                        messages=tuple({"role": str(t["role"]), "content": t["content"]} for t in turns))
    else:
        prompt, completion = row[src.prompt_column], row[src.completion_column]
        texts = {src.prompt_column: prompt, src.completion_column: completion}
        record = Record(src.label, file, line, "prompt_completion",
                        messages=({"role": "user", "content": prompt}, {"role": "assistant", "content": completion}))
    for where, text in texts.items():
        if not isinstance(text, str) or not text.strip():  # str(None) would train the literal "None"
            issues.add(file, "empty" if data_format == "text" else "empty-content",
                       f"{where} holds no text ({text!r:.40}); fill it or drop the row", line)
            return None
        binary = binary_reason(text)
        if binary is not None:
            issues.add(file, "binary", f"{where} {binary}", line)
            return None
    return record


def _read_jsonl(path: Path, issues: _Collector) -> Iterator[tuple[int, dict]]:
    """Line by line (not datasets' reader) so one broken line is named and skipped instead of failing the file."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                issues.add(path, "bad-json", f"not a JSON object ({exc.__class__.__name__}: {exc})", number)
                continue
            if not isinstance(row, dict):
                issues.add(path, "bad-json", "a JSON value that is not an object", number)
                continue
            yield number, row


def _load_table(src: _Columns, issues: _Collector) -> Iterator[Record]:
    if isinstance(src, HubSource):
        rows, file = _hub_rows(src), src.id
    elif isinstance(src, SavedSource):
        rows, file = _saved_rows(src), src.path
    else:
        path, file = Path(src.path), src.path
        if not path.exists() and not path.is_symlink():
            raise DataError(f"{path}: no such file; point the table source at a .jsonl, .csv or .parquet file")
        problem = not_a_regular_file(path)
        if problem is not None:
            issues.add(path, problem.kind, problem.reason)
            return
        if path.stat().st_size == 0:
            issues.add(path, "empty", "the file is empty")
            return
        if path.suffix in (".jsonl", ".json"):
            rows = _read_jsonl(path, issues)
        elif path.suffix in (".csv", ".parquet"):
            from datasets import load_dataset

            with datasets_bars_off():
                rows = enumerate(load_dataset(path.suffix[1:], data_files=str(path), split="train"), 1)
        else:
            raise DataError(f"{path}: unknown table format {path.suffix!r}; use .jsonl, .json, .csv or .parquet")
    data_format = None  # 'auto' decides on the first row, then holds for the whole source
    for line, row in rows:
        row = dict(row)
        data_format = data_format or src.detect_format(row)
        record = _row_record(src, data_format, row, file, line, issues)
        if record is not None:
            yield record


def _saved_rows(src: SavedSource) -> Iterator[tuple[int, dict]]:
    from datasets import DatasetDict, load_from_disk

    try:
        data = load_from_disk(src.path)
    except FileNotFoundError as exc:
        raise DataError(f"{src.path}: not a folder written by save_to_disk ({exc})") from None
    if isinstance(data, DatasetDict):
        if src.split not in data:
            raise DataError(f"{src.path} has splits {list(data)}, not {src.split!r}; set split in the source")
        data = data[src.split]
    return enumerate(data, 1)


def _hub_rows(src: HubSource) -> Iterator[tuple[int, dict]]:
    from datasets import load_dataset

    try:  # streaming: a Hub corpus larger than memory or disk is read row by row
        return enumerate(load_dataset(src.id, split=src.split, revision=src.revision, streaming=True), 1)
    except Exception as exc:  # offline, unknown id, gated: one line, not the hub client's traceback
        raise DataError(f"Hub dataset {src.id!r} could not be fetched ({exc.__class__.__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''}); check the id and the network, or "
                        "download it elsewhere and use a 'saved' or 'table' source") from None


def _load_text_files(src: TextSource, issues: _Collector) -> Iterator[Record]:
    root = Path(src.path)
    if not root.exists():
        raise DataError(f"{root}: no such file or folder; point the text source at a .txt/.md file or a folder")
    files = candidate_files(root, src.suffixes) if root.is_dir() else [root]
    if not files:
        raise DataError(f"{root} holds no {'/'.join(src.suffixes)} files")
    for path in files:
        problem = not_a_regular_file(path)
        if problem is not None:
            issues.add(path, problem.kind, problem.reason)
            continue
        try:
            data = path.read_bytes()
        except OSError as exc:  # removed or made unreadable since it was listed
            issues.add(path, "unreadable", f"cannot be read ({exc.strerror or exc}); fix its permissions")
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data[:exc.start].count(b"\n") + 1
            issues.add(path, "not-utf8", f"not UTF-8 text (byte {exc.start}); re-save the file as UTF-8", line)
            continue
        if not text.strip():
            issues.add(path, "empty", "the file holds no text")
            continue
        binary = binary_reason(text)
        if binary is not None:
            issues.add(path, "binary", f"{binary}; remove it from the source or list only text suffixes")
            continue
        yield Record(src.label, str(path.relative_to(root) if root.is_dir() else path.name), None, "text",
                     text=text, clean_as_pdf=src.clean)


def _other_files(src: PdfSource, not_read: list[FileIssue], issues: _Collector) -> Iterator[Record]:
    """A mixed folder's text and table files, read as their kind under the PDF source's label and weight when it
    asks (`read_other_files`); otherwise each is named, with how to include it."""
    common = {"name": src.label, "weight": src.weight, "on_error": src.on_error}
    for issue in not_read:
        suffix = issue.path.suffix.lower()
        # a licence or notice (LICENSE.txt) is the folder's paperwork, never training text
        readable = src.read_other_files and issue.path.is_file() and not is_notice(issue.path)
        if readable and suffix in TEXT_SUFFIXES:
            yield from _load_text_files(TextSource(path=str(issue.path), **common), issues)
        elif readable and suffix in TABLE_SUFFIXES:
            yield from _load_table(TableSource(path=str(issue.path), **common), issues)
        else:
            issues.add(issue.path, issue.kind, issue.reason, fatal=False)


def iter_records(sources: list[Any], text_cache: Optional[str] = None) -> Iterator[Union[Record, FileIssue]]:
    """Every record of every source, one at a time, each source's issues after its records: what a corpus larger
    than memory is written to Arrow from (memfit/data/arrow/records.py). PDF text is cleaned here (its cleaning
    rules belong to PDF artefacts); other text is cleaned only when the source asks."""
    from memfit.data.pdf.clean import clean_document
    from memfit.data.pdf.extract import extract_pdfs

    duplicates = Duplicates()  # across all sources: a copy in another source is as much a leak
    for src in sources:
        collector = _Collector(src)
        if isinstance(src, PdfSource):
            corpus = extract_pdfs(src.path, text_cache, keep_non_english=src.keep_non_english)
            for error in corpus.errors:
                collector.add(error.path, error.kind, error.reason)
            records = chain((Record(src.label, doc.name, None, "text", text=doc.clean_text(), n_pages=doc.n_pages)
                             for doc in corpus.documents), _other_files(src, corpus.not_read, collector))
        elif isinstance(src, TextSource):
            records = (Record(r.source, r.file, None, "text", text=clean_document([r.text])) if r.clean_as_pdf else r
                       for r in _load_text_files(src, collector))
        else:
            records = _load_table(src, collector)
        for record in records:
            repeated = duplicates.check(record.content(), record.name)
            if repeated is not None:
                collector.add(record.file, "duplicate", repeated, record.line, fatal=False)
                continue
            yield record
        yield from collector.issues


def load_records(sources: list[Any], text_cache: Optional[str] = None) -> tuple[list[Record], list[FileIssue]]:
    """Every usable record of every source, and the issues of the skipped input."""
    records: list[Record] = []
    issues: list[FileIssue] = []
    for item in iter_records(sources, text_cache):
        (issues if isinstance(item, FileIssue) else records).append(item)
    return [r for r in records if r.content().strip()], issues
