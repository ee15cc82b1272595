"""The text cache: one checksummed JSON entry per PDF content (sha256), tied to the pypdf version; a missing, stale,
edited or unreadable entry is a miss (re-extracted), and a cache that cannot be written only costs time."""
from __future__ import annotations

import json
import logging

import pypdf

from memfit.data.pdf.text_cache import TextCache, default_cache_dir

SHA = "ab" * 32


def test_default_cache_dir_follows_memfit_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("MEMFIT_CACHE", str(tmp_path / "mc"))
    assert default_cache_dir() == tmp_path / "mc" / "text"


def test_an_entry_round_trips_and_is_keyed_by_content(tmp_path):
    cache = TextCache(tmp_path)
    assert cache.load(SHA) is None
    cache.store(SHA, "paper.pdf", ["page one", "page two é"], ["pypdf: odd xref"])
    assert cache.load(SHA) == (["page one", "page two é"], ["pypdf: odd xref"])
    assert [p.name for p in tmp_path.iterdir()] == [f"{SHA}.json"]  # no temporary left behind
    assert cache.load("cd" * 32) is None


def _stored(folder):
    """(the cache, its one entry's file, the entry as written) after storing one PDF's text."""
    cache = TextCache(folder)
    cache.store(SHA, "paper.pdf", ["the original text"], [])
    entry = folder / f"{SHA}.json"
    return cache, entry, json.loads(entry.read_text())


def test_an_entry_of_another_pypdf_or_another_file_is_a_silent_miss(tmp_path, caplog):
    cache, entry, data = _stored(tmp_path)
    with caplog.at_level(logging.WARNING):
        entry.write_text(json.dumps({**data, "pypdf": pypdf.__version__ + ".other"}))
        assert cache.load(SHA) is None  # another pypdf extracts other text
        entry.write_text(json.dumps({**data, "sha256": "cd" * 32}))
        assert cache.load(SHA) is None
    assert caplog.records == []


def test_an_edited_or_damaged_entry_is_a_miss_with_one_warning(tmp_path, caplog):
    cache, entry, data = _stored(tmp_path)
    with caplog.at_level(logging.WARNING):
        entry.write_text(json.dumps({**data, "pages": ["an edited text"]}))
        assert cache.load(SHA) is None
        entry.write_text("{not json")
        assert cache.load(SHA) is None
    assert ["checksum" in r.message for r in caplog.records] == [True, False]  # the edit named; the damage says unreadable
    assert "unreadable" in caplog.records[1].message


def test_a_cache_that_cannot_be_written_only_warns(tmp_path, caplog):
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("x")
    with caplog.at_level(logging.WARNING):
        TextCache(blocked).store(SHA, "paper.pdf", ["text"], [])
    assert "could not write text cache entry" in caplog.text
