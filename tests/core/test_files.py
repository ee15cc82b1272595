"""memfit.core.files: the one atomic write path."""
import json
import math
import os

import pytest

from memfit.core.files import atomic_directory, atomic_write_bytes, atomic_write_json, atomic_write_text


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


# ---- folders ---------------------------------------------------------------------------------------------------------

def _dead_pid() -> int:
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid  # reaped: no process has this id now (reuse within the test is practically impossible)


def test_a_folder_appears_whole_or_not_at_all(tmp_path):
    out = tmp_path / "model"
    with pytest.raises(RuntimeError, match="conversion died"):
        with atomic_directory(out) as tmp:
            (tmp / "config.json").write_text("{}")
            raise RuntimeError("conversion died")
    assert os.listdir(tmp_path) == []  # no half folder, no temporary left
    with atomic_directory(out) as tmp:
        (tmp / "config.json").write_text("{}")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "w.bin").write_bytes(b"12")
    assert sorted(p.name for p in out.rglob("*")) == ["config.json", "sub", "w.bin"]
    assert os.listdir(tmp_path) == ["model"]


def test_replacing_a_folder_swaps_it_whole_and_a_failed_swap_keeps_the_old(tmp_path, monkeypatch):
    out = tmp_path / "adapter"
    with atomic_directory(out) as tmp:
        (tmp / "old.txt").write_text("old")
    with atomic_directory(out) as tmp:
        (tmp / "new.txt").write_text("new")
    assert os.listdir(out) == ["new.txt"] and os.listdir(tmp_path) == ["adapter"]
    real_rename = os.rename

    def rename(src, dst):  # the new folder cannot be moved in (e.g. the disk went read-only right then)
        if str(src).endswith(".tmp"):
            raise OSError(30, "Read-only file system")
        return real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(OSError, match="Read-only"):
        with atomic_directory(out) as tmp:
            (tmp / "newer.txt").write_text("newer")
    assert os.listdir(out) == ["new.txt"] and os.listdir(tmp_path) == ["adapter"]


def test_a_cache_folder_keeps_the_concurrent_winner(tmp_path):
    out = tmp_path / "cache"
    with atomic_directory(out, replace=False) as ours:
        (ours / "mine").write_text("late")
        with atomic_directory(out, replace=False) as theirs:  # another process finishes first
            (theirs / "theirs").write_text("early")
    assert os.listdir(out) == ["theirs"] and os.listdir(tmp_path) == ["cache"]


def test_leftovers_of_a_killed_writer_are_removed_and_an_interrupted_swap_is_undone(tmp_path):
    out, dead = tmp_path / "smollm2-135m", _dead_pid()
    stale = tmp_path / f".smollm2-135m.{dead}-0badc0de.tmp"  # a conversion killed half-way
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half")
    alive = tmp_path / f".smollm2-135m.{os.getppid()}-00000000.tmp"  # a live writer's: not ours to touch
    alive.mkdir()
    with atomic_directory(out, replace=False) as tmp:
        (tmp / "model.safetensors").write_bytes(b"whole")
    assert (out / "model.safetensors").read_bytes() == b"whole"
    assert sorted(os.listdir(tmp_path)) == sorted([alive.name, out.name])
    alive.rmdir()

    os.rename(out, tmp_path / f".smollm2-135m.{dead}-0badc0de.old")  # killed between its two renames
    with atomic_directory(tmp_path / "other"):
        pass
    with atomic_directory(out, replace=False) as tmp:  # the old folder is put back, so this cache write is not needed
        (tmp / "model.safetensors").write_bytes(b"second")
    assert (out / "model.safetensors").read_bytes() == b"whole"
    assert sorted(os.listdir(tmp_path)) == ["other", out.name]
