"""integrity.py: cache files verified against their recorded sha256; stale temp files removed only when no build
holds the lock."""
import fcntl
import logging

from datasets import Dataset

from memfit.data.arrow.cache_files import build_lock, cached_map


def _double(batch):
    return {"y": [2 * x for x in batch["x"]]}


def test_a_damaged_cache_file_is_rebuilt_once_and_then_reused(tmp_path, caplog):
    data = Dataset.from_dict({"x": list(range(50))})
    expected = [2 * x for x in range(50)]
    assert cached_map(data, _double, tmp_path, "double-k", "doubling")["y"] == expected
    (cache_file,) = tmp_path.glob("double-k*.arrow")
    assert (tmp_path / "double-k.sha256.json").exists()
    raw = bytearray(cache_file.read_bytes())
    raw[-100] ^= 0xFF
    cache_file.write_bytes(bytes(raw))
    with caplog.at_level(logging.WARNING, logger="memfit.data"):
        again = cached_map(data, _double, tmp_path, "double-k", "doubling")
    assert again["y"] == expected
    assert len([r for r in caplog.records if "rebuilding" in r.message]) == 1
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="memfit.data"):
        cached_map(data, _double, tmp_path, "double-k", "doubling")
    assert not caplog.records
    assert cached_map(data, _double, None, "double-k", "doubling")["y"] == expected  # in memory: no files


def test_an_unchanged_cache_file_is_verified_by_its_identity_not_hashed_again(tmp_path, monkeypatch):
    from memfit.core import integrity

    data = Dataset.from_dict({"x": list(range(50))})
    cached_map(data, _double, tmp_path, "double-k", "doubling")
    hashed = []
    monkeypatch.setattr(integrity, "file_sha256", lambda path: hashed.append(path) or "not a digest")
    assert cached_map(data, _double, tmp_path, "double-k", "doubling")["y"] == [2 * x for x in range(50)]
    assert hashed == []  # stat calls only: the digest recorded when the file was written is remembered by identity


def test_build_lock_cleans_only_when_no_other_build_holds_it(tmp_path):
    (tmp_path / "tmp123").write_text("x")
    with open(tmp_path / ".build.lock", "a+") as other:
        fcntl.flock(other, fcntl.LOCK_SH)
        with build_lock(tmp_path):
            assert (tmp_path / "tmp123").exists()
    with build_lock(tmp_path):
        assert not (tmp_path / "tmp123").exists()
