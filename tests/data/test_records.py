"""memfit.data.arrow.records: source records as Arrow rows (one row per document and per skipped input, in reading
order); the records' cache keyed by every source setting and every file's content, file contents remembered by file
identity (reruns over unchanged files hash nothing); a Hub source keyed by the commit it reads, never reused when that
is unknown; the sizes that choose the storage."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pdf_factory import english_page

from memfit.core import integrity
from memfit.data.arrow import records
from memfit.data.arrow.cache_files import digest_memo, remove_interrupted_builds
from memfit.data.arrow.records import (RECORD_FEATURES, content_hash, file_digests, memory_records, record_issues,
                                       record_rows, records_fingerprint, total_bytes, write_records)
from memfit.data.errors import FileIssue
from memfit.data.sources import HubSource, Record, TextSource

CHAT = ({"role": "user", "content": "Why?"}, {"role": "assistant", "content": "Warming."})


def _items():
    return [Record("notes", "a.txt", None, "text", text="The ocean is warming."),
            FileIssue(Path("notes/b.txt"), "not-utf8", "not UTF-8 text"),
            Record("notes", "c.txt", None, "text", text="   \n"),  # nothing in it: no document
            Record("qa", "qa.jsonl", 3, "chat", messages=CHAT)]


def test_rows_keep_the_reading_order_and_mark_skipped_input():
    rows = list(record_rows(_items()))
    assert [r["name"] for r in rows] == ["notes::a.txt", None, "qa::qa.jsonl:3"]
    assert rows[0]["n_chars"] == rows[0]["n_bytes"] == len("The ocean is warming.") and not rows[0]["chat"]
    assert rows[1]["issue_kind"] == "not-utf8" and rows[1]["text"] is None and rows[1]["file"] == "notes/b.txt"
    assert rows[2]["chat"] and rows[2]["text"] == Record("qa", "qa.jsonl", 3, "chat", messages=CHAT).content()


def test_the_in_memory_rows_give_back_the_issues_and_a_content_hash():
    records = memory_records(_items())
    assert records.features == RECORD_FEATURES and len(records) == 3
    assert record_issues(records) == [FileIssue(Path("notes/b.txt"), "not-utf8", "not UTF-8 text")]
    same = memory_records([item for item in _items() if not isinstance(item, FileIssue)])
    assert content_hash(records) == content_hash(same)  # skipped input decides no token
    edited = memory_records([Record("notes", "a.txt", None, "text", text="The ocean is cooling.")])
    assert content_hash(edited) != content_hash(memory_records(_items()[:1]))


def test_sizes_and_digests_cover_the_regular_files_a_path_holds(tmp_path):
    folder = tmp_path / "notes"
    (folder / "deep").mkdir(parents=True)
    (folder / "a.txt").write_text("12345")
    (folder / "deep" / "b.md").write_text("123")
    os.mkfifo(folder / "pipe.txt")  # never opened: reading it would block
    assert total_bytes(str(folder)) == 8 and total_bytes(str(folder / "a.txt")) == 5
    assert total_bytes(str(tmp_path / "missing")) == 0
    assert [Path(f).name for f, _ in file_digests(str(folder), integrity.DigestMemo(None))] == ["a.txt", "b.md"]


def test_the_fingerprint_follows_settings_and_content_not_timestamps(tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.txt").write_text(english_page(0, lines=3))
    sources = [TextSource(path=str(notes))]
    first = records_fingerprint(sources, None, integrity.DigestMemo(None))
    os.utime(notes / "a.txt", (0, 0))
    assert records_fingerprint(sources, None, integrity.DigestMemo(None)) == first
    assert records_fingerprint([TextSource(path=str(notes), clean=True)], None, integrity.DigestMemo(None)) != first
    assert records_fingerprint(sources, str(tmp_path / "text-cache"), integrity.DigestMemo(None)) != first
    (notes / "a.txt").write_text(english_page(1, lines=3))
    assert records_fingerprint(sources, None, integrity.DigestMemo(None)) != first


def test_written_records_are_reused_until_a_file_changes(tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.txt").write_text(english_page(0, lines=3))
    sources, cache = [TextSource(path=str(notes))], tmp_path / "arrow"
    records = write_records(sources, None, cache)
    assert records["name"] == [f"{notes}::a.txt"] and records.cache_files
    assert [f["filename"] for f in write_records(sources, None, cache).cache_files] == \
        [f["filename"] for f in records.cache_files]
    (notes / "a.txt").write_text(english_page(1, lines=3))
    assert write_records(sources, None, cache)["text"] == [english_page(1, lines=3)]


SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hashed(monkeypatch):
    """The files sha256 was computed over, in order."""
    seen = []
    real = integrity.file_sha256

    def counting(path):
        seen.append(os.path.basename(path))
        return real(path)

    monkeypatch.setattr(integrity, "file_sha256", counting)
    return seen


def test_unchanged_source_files_are_not_hashed_again_and_an_edit_with_the_mtime_restored_is(tmp_path, hashed):
    notes = tmp_path / "notes"
    notes.mkdir()
    for i in range(3):
        (notes / f"n{i}.txt").write_text(f"note number {i}\n")
    sources, cache = [TextSource(path=str(notes))], tmp_path / "records"
    cache.mkdir()
    first = records.records_fingerprint(sources, None, digest_memo(cache))
    assert sorted(hashed) == ["n0.txt", "n1.txt", "n2.txt"]
    hashed.clear()
    assert records.records_fingerprint(sources, None, digest_memo(cache)) == first and hashed == []  # stat only
    stamp = (notes / "n1.txt").stat()
    (notes / "n1.txt").write_text("note number X\n")  # same size, mtime put back: ctime still moves
    os.utime(notes / "n1.txt", ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert records.records_fingerprint(sources, None, digest_memo(cache)) != first and hashed == ["n1.txt"]


def test_a_hub_source_is_keyed_by_its_commit(tmp_path, monkeypatch):
    memo = digest_memo(tmp_path)
    pinned = records.records_fingerprint([HubSource(id="org/data", revision=SHA)], None, memo)
    other = records.records_fingerprint([HubSource(id="org/data", revision=SHA[::-1])], None, memo)
    assert pinned.startswith("records-") and pinned != other

    from huggingface_hub import HfApi

    keys = []
    for commit in (SHA, SHA, SHA[::-1]):  # the main branch as the Hub resolves it: twice, then after a push
        resolved = type("Info", (), {"sha": commit})
        monkeypatch.setattr(HfApi, "dataset_info", lambda self, repo, revision=None, info=resolved: info)
        keys.append(records.records_fingerprint([HubSource(id="org/data")], None, memo))
    assert keys[0] == keys[1] != keys[2] and None not in keys

    def offline(self, repo, revision=None):
        raise OSError("no network")

    monkeypatch.setattr(HfApi, "dataset_info", offline)
    assert records.records_fingerprint([HubSource(id="org/data")], None, memo) is None


def test_rows_of_a_hub_source_of_unknown_commit_are_never_reused(tmp_path, monkeypatch):
    from memfit.data import readers

    monkeypatch.setattr(records, "hub_commit", lambda src: None)
    rows = [{"text": "first version of the row"}]
    monkeypatch.setattr(readers, "_hub_rows", lambda src: enumerate(list(rows), 1))
    source = [HubSource(id="org/data")]
    first = records.write_records(source, cache_dir=tmp_path)
    rows[0]["text"] = "the dataset was updated on the Hub"
    second = records.write_records(source, cache_dir=tmp_path)
    assert first["text"] == ["first version of the row"] and second["text"] == ["the dataset was updated on the Hub"]
    (folder, _) = sorted(p for p in (tmp_path / "records").iterdir() if p.name.startswith(".unpinned."))
    assert folder.name.endswith(".tmp") and f".{os.getpid()}-" in folder.name
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    os.rename(folder, folder.with_name(f".unpinned.{dead.pid}-0badcafe.tmp"))  # as if its process had exited
    remove_interrupted_builds(tmp_path)
    assert len([p for p in (tmp_path / "records").iterdir() if p.name.startswith(".unpinned.")]) == 1
