"""memfit.core.files: the one atomic write path."""
import json
import math
import os

import pytest

from memfit.core.files import atomic_write_bytes, atomic_write_json, atomic_write_text


def test_json_is_strict_and_non_finite_floats_become_null(tmp_path):
    path = atomic_write_json(tmp_path / "r.json", {"ppl": math.nan, "rate": [math.inf, 1.5], "ok": 2})
    assert json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"invalid JSON constant {c}")) == \
        {"ppl": None, "rate": [None, 1.5], "ok": 2}


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    target = atomic_write_text(tmp_path / "results.json", "old")

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        atomic_write_bytes(target, b"new and longer")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["results.json"]


def test_temporary_names_are_per_process_and_in_the_same_folder(tmp_path, monkeypatch):
    seen = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (seen.append(a), real_replace(a, b)))
    atomic_write_text(tmp_path / "sub" / "x.md", "hello")
    atomic_write_text(tmp_path / "sub" / "x.md", "hello")
    assert len(set(map(str, seen))) == 2 and all(os.path.dirname(s) == str(tmp_path / "sub") for s in seen)
    assert all(str(os.getpid()) in os.path.basename(s) for s in seen)
    assert (tmp_path / "sub" / "x.md").read_text() == "hello"
