"""hygiene.py: regular files only (each other kind named), binary-looking text refused, file digests."""
import hashlib
import os

from memfit.core.integrity import file_sha256
from memfit.data.text.hygiene import binary_reason, candidate_files, not_a_regular_file


def test_each_kind_of_non_regular_file_is_named_and_links_to_folders_are_not_followed(tmp_path):
    (tmp_path / "a.txt").write_text("text")
    os.mkfifo(tmp_path / "p.txt")
    (tmp_path / "d.txt").mkdir()
    (tmp_path / "loop.txt").symlink_to(tmp_path / "loop.txt")
    (tmp_path / "gone.txt").symlink_to(tmp_path / "nowhere")
    (tmp_path / "up").symlink_to(tmp_path)
    found = candidate_files(tmp_path, [".txt"])
    assert [p.name for p in found] == ["a.txt", "d.txt", "gone.txt", "loop.txt", "p.txt"]
    kinds = {p.name: getattr(not_a_regular_file(p), "kind", None) for p in found}
    assert kinds == {"a.txt": None, "d.txt": "not_a_file", "gone.txt": "broken_link", "loop.txt": "symlink_loop",
                     "p.txt": "not_a_file"}
    assert file_sha256(tmp_path / "a.txt") == hashlib.sha256(b"text").hexdigest()


def test_binary_looking_text():
    assert binary_reason("Plain text\twith tabs,\nnewlines and é accents.\f") is None
    assert "NUL" in binary_reason("abc\x00def")
    assert "control characters" in binary_reason("ab\x01\x02" * 10)
    assert binary_reason("x" * 200 + "\x1b") is None  # one stray escape in 200 characters is still text
