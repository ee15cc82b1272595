"""Source records as Arrow rows: one row per document and per skipped input, in reading order; the records' cache
keyed by every source setting and every file's content; the sizes that choose the storage."""
from __future__ import annotations

import os
from pathlib import Path

from pdf_factory import english_page

from memfit.data.arrow.records import (RECORD_FEATURES, content_hash, file_digests, memory_records, record_issues,
                                       record_rows, records_fingerprint, total_bytes, write_records)
from memfit.data.errors import FileIssue
from memfit.data.sources import Record, TextSource

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
    assert [Path(f).name for f, _ in file_digests(str(folder))] == ["a.txt", "b.md"]


def test_the_fingerprint_follows_settings_and_content_not_timestamps(tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.txt").write_text(english_page(0, lines=3))
    sources = [TextSource(path=str(notes))]
    first = records_fingerprint(sources, None)
    os.utime(notes / "a.txt", (0, 0))
    assert records_fingerprint(sources, None) == first
    assert records_fingerprint([TextSource(path=str(notes), clean=True)], None) != first
    assert records_fingerprint(sources, str(tmp_path / "text-cache")) != first
    (notes / "a.txt").write_text(english_page(1, lines=3))
    assert records_fingerprint(sources, None) != first


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
