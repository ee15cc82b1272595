"""Property tests of the run-config loader (`memfit train CONFIG.yaml --flags`, the climate example): every YAML file
and every flag either gives a FinetuneConfig or raises the documented errors - ConfigError with one line naming the
setting, or argparse's exit code 2 for a malformed flag - never a traceback of yaml, pydantic or a sort."""
from __future__ import annotations

import datetime
import tempfile
from pathlib import Path

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from memfit.cli.train import parse_config
from memfit.core.errors import ConfigError
from memfit.recipes.finetune import FinetuneConfig
from memfit.recipes.run_config import FLAT, SECTIONS

FIELDS = sorted(FLAT)  # every flat name: the YAML keys and the flags
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**9, 10**9), st.floats(), st.text(max_size=10),
                    st.dates(), st.datetimes(min_value=datetime.datetime(1900, 1, 1)))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                          max_size=3), max_leaves=6)
KEYS = st.one_of(st.sampled_from(FIELDS + sorted(SECTIONS) + ["bogus", "config"]), st.integers(), st.none(),
                 st.text(max_size=8))  # flat names and whole sections (train: {...})
MAPPINGS = st.dictionaries(KEYS, VALUES, max_size=5).map(lambda d: yaml.safe_dump(d, allow_unicode=True))
YAML_ISH = st.text(alphabet="abcdlrsqe_:-[]{}!&*?|>'\"#%@`,.0123456789 \n\t", max_size=60)
TRICKY = st.sampled_from(["lr: 2001-13-01\n", "? [1, 2]\n: 3\n", "1: 2\nnull: 3\n", "!!set {a, b}\n",
                          "lr: !!float .nan\n", "model: !!binary aGVsbG8=\n", "&a [*a]\n", ""])
FLAG_VALUE = st.one_of(st.text(max_size=12), st.sampled_from(["[", "{a: [}", "2001-13-01", "null", "1e400", "-1",
                                                              ".inf", "true"]))
FLAGS = st.lists(st.tuples(st.sampled_from(FIELDS + ["bogus"]), FLAG_VALUE), max_size=3)


def _parses_or_documented_error(argv: list[str]) -> None:
    try:
        cfg = parse_config(argv)
    except ConfigError as exc:
        assert str(exc) and "\n" not in str(exc).strip()
        return
    except SystemExit as exc:  # OneLineParser.error: one line on stderr, exit code 2
        assert exc.code == 2
        return
    assert isinstance(cfg, FinetuneConfig)
    assert FinetuneConfig.model_validate(cfg.model_dump()) == cfg


@settings(max_examples=100, deadline=None)
@given(st.one_of(MAPPINGS, YAML_ISH, TRICKY), FLAGS)
def test_any_config_file_and_flags_parse_or_raise_the_documented_error(text, flags):
    argv = [arg for name, value in flags for arg in ("--" + name.replace("_", "-"), value)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "run.yaml"
        path.write_text(text, encoding="utf-8")
        _parses_or_documented_error([str(path), *argv])
    _parses_or_documented_error(argv)  # flags alone


def test_nesting_deeper_than_the_parser_recurses_is_a_config_error(tmp_path):
    # slow for yaml to unwind (seconds), so tried once here rather than among the generated examples
    (tmp_path / "deep.yaml").write_text("[" * 1200)
    _parses_or_documented_error([str(tmp_path / "deep.yaml")])
    _parses_or_documented_error(["--run-name", "[" * 1200])


def test_time_based_checkpoints_are_set_from_the_command_line_and_the_example():
    cfg = parse_config(["--checkpoint-minutes", "2.5", "--checkpoint-every", "null"])
    assert cfg.train.checkpoint_minutes == 2.5 and cfg.train.checkpoint_every is None
    assert parse_config([]).train.checkpoint_minutes == 10.0  # on by default: a read-only folder mid-run loses <= 10 min
