"""What the recipe tests share with the data tests (tests/data): its PDF writer and chat sources on the import path,
and its in-process byte-level BPE tokenizer as a fixture here too."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

DATA_TESTS = Path(__file__).resolve().parents[1] / "data"
sys.path.insert(0, str(DATA_TESTS))  # pdf_factory, test_bundle


def _data_fixtures():
    spec = importlib.util.spec_from_file_location("data_fixtures", DATA_TESTS / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tiny_tokenizer = _data_fixtures().tiny_tokenizer
