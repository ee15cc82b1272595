"""memfit.core.integrity: content checksums that mean it - per-file manifests, folder fingerprints cached by file
identity, embedded JSON checksums - and core/files.py's cache-folder check and stale-temporary cleanup.

Every silent case of issue 30 is played as a user plays it in tests/hostile/ (runs, caches, inputs); the unit-level
hostile cases live next to the code they break: tests/cli/test_evaluate.py and
tests/cli/test_merge.py (changed base, flipped adapter bit, edited results.json, --out inside the run, killed merge),
tests/plan/test_plan_cache.py (corrupt plan entries), tests/test_models.py (damaged converted-model cache)."""
from __future__ import annotations

import errno
import json
import os
import pathlib
import subprocess
import sys

import pytest

from memfit.core import integrity
from memfit.core.files import atomic_directory, check_cache_dir, remove_stale_temporaries
from memfit.core.integrity import (IntegrityError, checksum_problem, folder_fingerprint, manifest_problem,
                                   verify_manifest, with_checksum, write_manifest)


def _flip(path, offset=5):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.fixture
def folder(tmp_path):
    out = tmp_path / "adapter"
    (out / "sub").mkdir(parents=True)
    (out / "adapter_model.safetensors").write_bytes(os.urandom(4096))
    (out / "adapter_config.json").write_text('{"r": 4}')
    (out / "sub" / "extra.bin").write_bytes(b"x" * 100)
    return out


def test_a_manifest_covers_every_file_and_names_the_first_that_differs(folder):
    write_manifest(folder)
    recorded = json.loads((folder / integrity.MANIFEST).read_text())["files"]
    assert sorted(recorded) == ["adapter_config.json", "adapter_model.safetensors", "sub/extra.bin"]
    assert manifest_problem(folder) is None
    _flip(folder / "adapter_model.safetensors")  # one flipped bit
    with pytest.raises(IntegrityError, match="adapter_model.safetensors does not match its recorded sha256"):
        verify_manifest(folder)
    _flip(folder / "adapter_model.safetensors")  # flipped back: whole again
    (folder / "sub" / "extra.bin").unlink()
    assert manifest_problem(folder).endswith("extra.bin is missing")


def test_a_missing_or_unreadable_manifest(folder):
    assert "no checksum manifest" in manifest_problem(folder)
    assert manifest_problem(folder, required=False) is None  # folders written before manifests existed
    (folder / integrity.MANIFEST).write_text('{"files": ')  # truncated
    assert "unreadable" in manifest_problem(folder, required=False)


def test_fingerprints_follow_content_and_the_memo_skips_unchanged_files(folder, tmp_path, monkeypatch):
    memo = tmp_path / "memo.json"
    first = folder_fingerprint(folder, ("*.safetensors",), memo)
    hashed = []
    real = integrity.file_sha256
    monkeypatch.setattr(integrity, "file_sha256", lambda p: (hashed.append(p), real(p))[1])
    assert folder_fingerprint(folder, ("*.safetensors",), memo) == first and hashed == []  # identity unchanged
    weights = folder / "adapter_model.safetensors"
    stat = weights.stat()
    _flip(weights)  # same size, and the mtime put back: the ctime in the identity still changed
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert folder_fingerprint(folder, ("*.safetensors",), memo) != first and len(hashed) == 1
    with pytest.raises(IntegrityError, match="nothing to fingerprint"):
        folder_fingerprint(tmp_path / "empty-or-missing")


def test_a_corrupt_memo_is_only_a_slower_verification(folder, tmp_path):
    memo = tmp_path / "memo.json"
    memo.write_text("\x00 not json")
    assert folder_fingerprint(folder, memo=memo) == folder_fingerprint(folder)
    assert isinstance(json.loads(memo.read_text()), dict)  # rewritten whole


def test_embedded_checksums_notice_an_edit_and_survive_the_json_round_trip():
    sealed = with_checksum({"lr": 1e-4, "ppl": float("nan"), 3: (1, 2), "nested": {"b": 1, "a": [1.5]}})
    parsed = json.loads(json.dumps(sealed, allow_nan=True).replace("NaN", "null"))
    assert checksum_problem(parsed) is None
    parsed["lr"] = 1e-3
    assert "does not match its checksum" in checksum_problem(parsed)
    assert "no checksum" in checksum_problem({"lr": 1}) and checksum_problem({"lr": 1}, required=False) is None
    assert "not a JSON object" in checksum_problem([1])


@pytest.mark.parametrize("case", ["dev-null", "a-file", "under-a-file", "read-only"])
def test_unusable_cache_folders_are_one_line(tmp_path, monkeypatch, case):
    (tmp_path / "file").write_text("x")
    path = {"dev-null": "/dev/null", "a-file": tmp_path / "file", "under-a-file": tmp_path / "file" / "plans",
            "read-only": tmp_path / "ro" / "plans"}[case]
    with monkeypatch.context() as patched:
        if case == "read-only":  # (chmod alone does not stop root, which these tests may run as)
            def read_only(self, data):
                raise OSError(errno.EROFS, "Read-only file system")
            patched.setattr(pathlib.Path, "write_bytes", read_only)
        with pytest.raises(ValueError) as err:
            check_cache_dir(path, "--plan-cache")
    assert str(err.value).startswith(f"--plan-cache {path}") and "\n" not in str(err.value)
    assert check_cache_dir(tmp_path / "new" / "cache") == tmp_path / "new" / "cache"  # created, writable


def test_temporaries_of_dead_writers_are_removed_for_any_target(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".merged-a.{dead.pid}-deadbeef.tmp"  # a merge into another --out, killed half-way
    (stale / "x").mkdir(parents=True)
    old_name = tmp_path / f".merged-d.tmp-{dead.pid}-deadbeef"  # how merges named their temporaries before
    old_name.mkdir()
    live = tmp_path / f".merged-b.{os.getppid()}-deadbeef.tmp"  # a live writer's: kept
    live.mkdir()
    remove_stale_temporaries(tmp_path)
    assert not stale.exists() and not old_name.exists() and live.exists()
    with atomic_directory(tmp_path / "merged-c") as tmp:
        (tmp / "f").write_text("ok")
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "merged-c"]
