"""memfit.data.arrow.records: the records cache's key - file contents remembered by file identity (reruns over
unchanged files hash nothing), and a Hub source keyed by the commit it reads, never reused when that is unknown."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from memfit.core import integrity
from memfit.data.arrow import records
from memfit.data.arrow.cache_files import digest_memo, remove_killed_build_files
from memfit.data.sources import HubSource, TextSource

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
    remove_killed_build_files(tmp_path)
    assert len([p for p in (tmp_path / "records").iterdir() if p.name.startswith(".unpinned.")]) == 1
