"""Checksums of a folder: written last, every later change named by file."""

from __future__ import annotations

from memfit.training.manifest import MANIFEST, manifest_problem, write_manifest


def test_a_sealed_folder_verifies_and_each_kind_of_damage_is_named(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.bin").write_bytes(b"0123456789")
    (tmp_path / "sub" / "b.json").write_text('{"x": 1}')
    assert manifest_problem(tmp_path) == "no manifest"
    write_manifest(tmp_path)
    assert manifest_problem(tmp_path) is None
    (tmp_path / "a.bin").write_bytes(b"01234")
    assert manifest_problem(tmp_path) == "a.bin has 5 bytes, 10 were written (truncated or changed)"
    (tmp_path / "a.bin").write_bytes(b"0123456780")  # same size, one byte changed
    assert "a.bin does not match its checksum" in manifest_problem(tmp_path)
    (tmp_path / "a.bin").write_bytes(b"0123456789")
    (tmp_path / "sub" / "b.json").unlink()
    assert manifest_problem(tmp_path).startswith("sub/b.json cannot be read")
    (tmp_path / MANIFEST).write_text('{"files": ')
    assert manifest_problem(tmp_path) == f"{MANIFEST} is unreadable (JSONDecodeError)"
