"""Fixtures of the per-family CLI runs: the data tests' tiny tokenizer and three short Markdown documents (two train,
one test), shared by every run of the session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "recipes"))
from test_finetune import tiny_tokenizer  # noqa: E402,F401 (the session fixture, collected from this namespace)
from pdf_factory import english_page  # noqa: E402 (on the path once test_finetune is imported)


@pytest.fixture(scope="session")
def notes(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("notes")
    for i in range(3):
        (folder / f"note{i}.md").write_text("\n".join(english_page(seed=i) for _ in range(2)))
    return folder
