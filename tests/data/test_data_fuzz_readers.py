"""Hypothesis fuzz of the text and JSONL readers: any bytes in a .txt file and any lines in a .jsonl file give
records or named issues - never an exception other than the user's one-line `DataError`, never binary or empty text
as a document, never a chat turn whose content is not text. Each test counts the examples it ran and asserts the
count (the numbers are in the report: 150 text folders + 150 JSONL files per run)."""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memfit.data import DataError, TableSource, TextSource, load_records
from memfit.data.text.hygiene import binary_reason

EXAMPLES = 150
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

_texts = st.one_of(st.binary(max_size=300), st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")))
_json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                        max_size=3), max_leaves=8)
_turn = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system", "robot"]),
                               "content": st.none() | st.text(max_size=30) | st.integers()})
_rows = st.one_of(
    st.fixed_dictionaries({"text": st.none() | st.text(max_size=80) | st.integers()}),
    st.fixed_dictionaries({"messages": st.lists(_turn, max_size=3) | _json_values}),
    st.fixed_dictionaries({"prompt": st.none() | st.text(max_size=20), "completion": st.none() | st.text(max_size=20)}),
    _json_values)
_lines = st.lists(st.one_of(_rows.map(json.dumps), st.binary(max_size=40).map(lambda b: b.decode("latin-1"))),
                  max_size=6)


def _check(records, issues) -> None:
    for record in records:
        assert record.content().strip() and binary_reason(record.content()) is None
        for turn in record.messages or ():
            assert isinstance(turn["content"], str) and turn["content"].strip()
    assert all(issue.kind and issue.reason for issue in issues)


def test_fuzz_text_files():
    ran = []

    @FUZZ
    @given(files=st.lists(_texts, min_size=1, max_size=4))
    def run(files):
        ran.append(1)
        folder = Path(tempfile.mkdtemp(prefix="memfit-fuzz-"))
        try:
            for i, content in enumerate(files):
                (folder / f"f{i}.txt").write_bytes(content)
            _check(*load_records([TextSource(path=str(folder))]))
        except DataError as exc:
            assert str(exc) and "\n" not in str(exc).strip()
        finally:
            shutil.rmtree(folder)

    run()
    assert len(ran) == EXAMPLES


def test_fuzz_jsonl_files():
    ran = []

    @FUZZ
    @given(lines=_lines, data_format=st.sampled_from(["auto", "text", "chat", "prompt_completion"]))
    def run(lines, data_format):
        ran.append(1)
        folder = Path(tempfile.mkdtemp(prefix="memfit-fuzz-"))
        try:
            path = folder / "rows.jsonl"
            path.write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
            _check(*load_records([TableSource(path=str(path), format=data_format)]))
        except DataError as exc:
            assert str(exc)
        finally:
            shutil.rmtree(folder)

    run()
    assert len(ran) == EXAMPLES
