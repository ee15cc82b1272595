"""memfit.recipes.finetune_data: a mixed folder (PDFs plus text, Markdown and JSONL files) given as `pdf_dir` names
every file the PDF pipeline does not read, with how to include it, in the run's log line and results; given as a pdf
source with `read_other_files: true`, every file is read as its kind."""
from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "data"))
from test_finetune import tiny_tokenizer  # noqa: E402,F401 (the session fixture)
from pdf_factory import english_page, write_text_pdf  # noqa: E402

from memfit.cli.train import parse_config  # noqa: E402
from memfit.recipes.finetune_data import finetune_datasets  # noqa: E402

STATE = SimpleNamespace(device=SimpleNamespace(type="cpu"), main_process_first=contextlib.nullcontext)


@pytest.fixture
def mixed(tmp_path) -> Path:
    folder = tmp_path / "mixed"
    folder.mkdir()
    for n in range(2):
        write_text_pdf(folder / f"p{n}.pdf", [english_page(seed=10 * n + page) for page in range(2)])
    (folder / "notes.txt").write_text(english_page(seed=30))
    (folder / "readme.md").write_text("# Notes\n\n" + english_page(seed=31))
    (folder / "rows.jsonl").write_text("".join(json.dumps({"text": english_page(seed=40 + n)}) + "\n"
                                               for n in range(2)))  # a table: one document per row
    return folder


def _data(tmp_path: Path, tokenizer, *flags: str):
    cfg = parse_config([*flags, "--seq-len", "32", "--test-fraction", "0.34", "--text-cache", str(tmp_path / "c")])
    return finetune_datasets(cfg.data_request(), tokenizer, STATE)


def test_a_mixed_pdf_dir_names_each_file_it_does_not_read_and_how_to_include_it(tmp_path, mixed, tiny_tokenizer):
    _, data, summary = _data(tmp_path, tiny_tokenizer, "--pdf-dir", str(mixed))
    assert data["documents"] == 2
    for name, kind in (("notes.txt", "text"), ("readme.md", "text"), ("rows.jsonl", "table")):
        line = next(line for line in summary.splitlines() if f"{name}:" in line)
        assert line.startswith("  not read") and f"{{kind: {kind}, path: {mixed / name}}}" in line
        assert f"{{kind: pdf, path: {mixed}, read_other_files: true}}" in line
        assert any(name in entry for entry in data["not_read"])


def test_read_other_files_trains_on_every_file_as_its_kind(tmp_path, mixed, tiny_tokenizer):
    source = f"[{{kind: pdf, path: {mixed}, read_other_files: true}}]"
    bundle, data, summary = _data(tmp_path, tiny_tokenizer, "--sources", source)
    files = sorted(Path(name.split("::")[1]).name for name in bundle.documents["name"])  # "source::file[:row]"
    assert files == ["notes.txt", "p0.pdf", "p1.pdf", "readme.md", "rows.jsonl:1", "rows.jsonl:2"], files
    assert data["documents"] == 6 and data["skipped"] == [], summary
