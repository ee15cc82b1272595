"""Source records -> an Arrow dataset on disk, written by `Dataset.from_generator` one record at a time, so a corpus
larger than memory never sits in a Python list; what the bundle builder tokenises (memfit/data/arrow/tokens.py).

One row per record (plain text, or chat turns as the JSON `Record.content()` gives) and one row per skipped input
(`issue_kind` set, no text), in the order `load_records` returns them. The generator's cache is keyed by the sources'
settings and the sha256 of every file they read - content, not size and mtime, so a text edited at the same size with
its mtime restored is read again; the digests are remembered by file identity including ctime, which no program can
put back, so a rerun over unchanged files costs stat calls - and its files are checked against their recorded sha256
(cache_files.py). A Hub source is keyed by the commit it reads; when that is unknown (offline, a branch the Hub does
not resolve) its rows are read again into a temporary cache the next build removes, never reused. The tokens' cache
is keyed by the records' content (`content_hash`), which is what decides the tokens.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Optional, Union

from datasets import Dataset, Features, Value

from memfit.core.integrity import DigestMemo
from memfit.data.arrow.cache_files import MANIFEST, digest_memo, drop_if_corrupt, record_checksums
from memfit.data.errors import DataError, FileIssue
from memfit.data.readers import iter_records
from memfit.data.sources import HubSource, Record
from memfit.data.text.hygiene import candidate_files, not_a_regular_file

log = logging.getLogger(__name__)

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


def file_digests(path: str, memo: DigestMemo) -> list[tuple[str, str]]:
    """(file, sha256) of every regular file a source path holds (FIFOs, devices and link loops are not opened)."""
    root = Path(path)
    files = [root] if root.is_file() else candidate_files(root, [""]) if root.is_dir() else []
    return [(str(p), memo.digest(p)) for p in files if not_a_regular_file(p) is None]


def hub_commit(src: HubSource) -> Optional[str]:
    """The commit a Hub source reads: its `revision` when that is a full commit sha, else the one the Hub resolves it
    to now; None when that cannot be known (offline, no such repository or revision)."""
    if src.revision and re.fullmatch(r"[0-9a-f]{40}", src.revision):
        return src.revision
    try:
        from huggingface_hub import HfApi

        return HfApi().dataset_info(src.id, revision=src.revision).sha
    except Exception:  # any failure means the same thing here: the rows cannot be tied to a commit
        return None


def records_fingerprint(sources: list[Any], text_cache: Optional[str], memo: DigestMemo) -> Optional[str]:
    """Changes with any source setting, any file's content and a Hub source's commit; None when a Hub source's
    commit is unknown (its rows may have changed: nothing may be reused)."""
    stamp = [RECORDS_VERSION, str(text_cache)]
    for src in sources:
        stamp.append(json.dumps(src.model_dump(), sort_keys=True))
        if isinstance(src, HubSource):
            commit = hub_commit(src)
            if commit is None:
                log.info("Hub dataset %r: its commit is unknown, so its rows are read again and not cached (pin "
                         "`revision:` to a commit sha to reuse them)", src.id)
                return None
            stamp.append(commit)
        elif getattr(src, "path", None):
            stamp.append(json.dumps(file_digests(src.path, memo)))
    memo.save()
    return "records-" + hashlib.sha256("\n".join(stamp).encode()).hexdigest()[:40]


def write_records(sources: list[Any], text_cache: Optional[str] = None,
                  cache_dir: Optional[Path] = None) -> Dataset:
    """The memory-mapped record rows of `sources` (rebuilt only when `records_fingerprint` changes)."""
    from datasets.exceptions import DatasetGenerationError

    folder = Path(cache_dir or default_arrow_dir()) / "records"
    folder.mkdir(parents=True, exist_ok=True)
    fingerprint = records_fingerprint(sources, text_cache, digest_memo(folder))
    if fingerprint is None:  # named like memfit's temporaries: the next build removes it once this process is gone
        folder, fingerprint = folder / f".unpinned.{os.getpid()}-{secrets.token_hex(4)}.tmp", "records-unpinned"
    manifest = folder / f"{fingerprint}{MANIFEST}"
    builders = [d for d in folder.rglob(f"*{fingerprint}*") if d.is_dir()] if folder.is_dir() else []
    for derived in [f for d in builders for f in d.rglob("cache-*.arrow")]:
        # datasets' caches of selections and filters of earlier runs: cheap to recompute, and no checksum covers
        # them, so they are never reused (nor taken for a damaged records file)
        derived.unlink(missing_ok=True)
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
