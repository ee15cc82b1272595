"""Source records -> an Arrow dataset on disk, written by `Dataset.from_generator` one record at a time, so a corpus
larger than memory never sits in a Python list; what the bundle builder tokenises (memfit/data/arrow/tokens.py).

One row per record (plain text, or chat turns as the JSON `Record.content()` gives) and one row per skipped input
(`issue_kind` set, no text), in the order `load_records` returns them. The generator's cache is keyed by the sources'
settings and the sha256 of every file they read - content, not size and mtime, so a text edited at the same size with
its mtime restored is read again - and its files are checked against their recorded sha256 (integrity.py); the
tokens' cache is keyed by the records' content (`content_hash`), which is what decides the tokens.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Optional, Union

from datasets import Dataset, Features, Value

from memfit.data.arrow.cache_files import MANIFEST, drop_if_corrupt, record_checksums
from memfit.data.errors import DataError, FileIssue
from memfit.core.integrity import file_sha256
from memfit.data.text.hygiene import candidate_files, not_a_regular_file
from memfit.data.readers import iter_records
from memfit.data.sources import Record

RECORDS_VERSION = "3"  # bump when what a record row holds, or how sources are read and cleaned, changes
RECORD_FEATURES = Features({
    "name": Value("string"), "source": Value("string"), "file": Value("string"), "line": Value("int64"),
    "chat": Value("bool"), "text": Value("string"), "n_chars": Value("int64"), "n_bytes": Value("int64"),
    "n_pages": Value("int64"), "issue_kind": Value("string"), "issue_reason": Value("string"),
})


def default_arrow_dir() -> Path:
    return Path(os.environ.get("MEMFIT_CACHE", Path.home() / ".cache" / "memfit")).expanduser() / "arrow"


def record_rows(items: Iterable[Union[Record, FileIssue]]) -> Iterator[dict[str, Any]]:
    """One row per record with text, one per skipped input (`issue_kind` set), in the order given."""
    for item in items:
        if isinstance(item, FileIssue):
            yield {"name": None, "source": None, "file": str(item.path), "line": None, "chat": False, "text": None,
                   "n_chars": 0, "n_bytes": 0, "n_pages": 0, "issue_kind": item.kind, "issue_reason": item.reason}
            continue
        text = item.content()
        if text.strip():  # as load_records: a record with nothing in it is no document
            yield {"name": item.name, "source": item.source, "file": item.file, "line": item.line,
                   "chat": item.messages is not None, "text": text, "n_chars": len(text),
                   "n_bytes": len(text.encode("utf-8")), "n_pages": item.n_pages, "issue_kind": None,
                   "issue_reason": None}


def _source_rows(sources: list[Any], text_cache: Optional[str]) -> Iterator[dict[str, Any]]:
    yield from record_rows(iter_records(sources, text_cache))


def memory_records(items: Iterable[Union[Record, FileIssue]]) -> Dataset:
    """The record rows held in memory (the in-memory storage of the bundle builder)."""
    return Dataset.from_list(list(record_rows(items)), features=RECORD_FEATURES)


def total_bytes(path: str) -> int:
    """The size of a source path's files (a file, or every file under a folder): what decides the storage."""
    root = Path(path)
    files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()] if root.is_dir() else []
    return sum(p.stat().st_size for p in files)


def file_digests(path: str) -> list[tuple[str, str]]:
    """(file, sha256) of every regular file a source path holds (FIFOs, devices and link loops are not opened)."""
    root = Path(path)
    files = [root] if root.is_file() else candidate_files(root, [""]) if root.is_dir() else []
    return [(str(p), file_sha256(p)) for p in files if not_a_regular_file(p) is None]


def records_fingerprint(sources: list[Any], text_cache: Optional[str]) -> str:
    """Changes with any source setting and any file's content (a Hub source: with its id and split only)."""
    stamp = [RECORDS_VERSION, str(text_cache)]
    for src in sources:
        stamp.append(json.dumps(src.model_dump(), sort_keys=True))
        if getattr(src, "path", None):
            stamp.append(json.dumps(file_digests(src.path)))
    return "records-" + hashlib.sha256("\n".join(stamp).encode()).hexdigest()[:40]


def write_records(sources: list[Any], text_cache: Optional[str] = None,
                  cache_dir: Optional[Path] = None) -> Dataset:
    """The memory-mapped record rows of `sources` (rebuilt only when `records_fingerprint` changes)."""
    from datasets.exceptions import DatasetGenerationError

    folder = Path(cache_dir or default_arrow_dir()) / "records"
    fingerprint = records_fingerprint(sources, text_cache)
    manifest = folder / f"{fingerprint}{MANIFEST}"
    builders = [d for d in folder.rglob(f"*{fingerprint}*") if d.is_dir()] if folder.is_dir() else []
    drop_if_corrupt("records", [f for d in builders for f in sorted(d.rglob("*.arrow"))], manifest,
                    lambda: [shutil.rmtree(d, ignore_errors=True) for d in builders])
    try:
        records = Dataset.from_generator(_source_rows, features=RECORD_FEATURES, cache_dir=str(folder),
                                         gen_kwargs={"sources": sources, "text_cache": text_cache},
                                         fingerprint=fingerprint)
    except DatasetGenerationError as exc:  # a source with on_error='raise', a missing file: the user's one line
        cause = exc.__cause__
        while cause is not None and not isinstance(cause, DataError):
            cause = cause.__cause__
        if cause is None:
            raise
        raise cause from None
    record_checksums([Path(f["filename"]) for f in records.cache_files], manifest)
    return records


def content_hash(records: Dataset, batch_size: int = 10_000) -> str:
    """sha256 over every record's name, kind and text, read in Arrow batches (never the whole column at once)."""
    digest = hashlib.sha256()
    for batch in records.select_columns(["name", "chat", "text"]).iter(batch_size=batch_size):
        for name, chat, text in zip(batch["name"], batch["chat"], batch["text"]):
            if name is not None:
                digest.update(f"{name}\0{int(chat)}\0{text}\0".encode())
    return digest.hexdigest()


def record_issues(records: Dataset) -> list[FileIssue]:
    """The skipped inputs, in reading order (a few rows: found by Arrow compute, not a pass in Python)."""
    import pyarrow.compute as pc

    rows = records.select(pc.indices_nonzero(pc.is_valid(records.data.column("issue_kind"))).to_pylist())
    return [FileIssue(Path(r["file"]), r["issue_kind"], r["issue_reason"])
            for r in rows.select_columns(["file", "issue_kind", "issue_reason"])]
