"""The plan cache file (memfit.plan.cache): every entry carries its own checksum; a truncated, corrupt, hand-edited or
checksum-less entry is never reused and never fatal - one warning line, the entry removed, the plan measured again."""
from __future__ import annotations

import json
import logging

import pytest

from memfit import Stack
from memfit.plan.cache import read_plan_cache, write_plan_cache
from memfit.plan.planner import plan
from memfit.plan.probe import SimulatedMeter
from memfit.plan.seq_len import plan_max_seq_len
from memfit.training.backoff import update_plan_cache
from _models import tiny_model

SEQ, BUDGET = 64, 3.0e6


def _model(spec="lora:dropout=0+gc", **config):
    stack = Stack.from_spec(spec)
    return stack, stack.apply_model(tiny_model(**config), stack.context("cpu"))


DAMAGE = {
    "truncated": lambda text: text[: len(text) // 2],
    "binary": lambda text: "\x00\xff" * 20,
    "edited": lambda text: text.replace('"max_micro_batch": ', '"max_micro_batch": 1', 1),
    "no checksum": lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "checksum"}),
    "not an object": lambda text: "[1, 2]",
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_plan_entry_is_planned_again_not_reused(tmp_path, caplog, damage):
    stack, model = _model()
    first = plan(model, stack, seq_len=SEQ, meter=SimulatedMeter(BUDGET), cache_dir=tmp_path)
    (entry,) = tmp_path.glob("*.json")
    entry.write_text(DAMAGE[damage](entry.read_text()))
    with caplog.at_level(logging.WARNING, logger="memfit.plan.cache"):
        again = plan(model, stack, seq_len=SEQ, meter=SimulatedMeter(BUDGET), cache_dir=tmp_path)
    assert not again.cache_hit and again.max_micro_batch == first.max_micro_batch  # measured, not read
    (line,) = [r.getMessage() for r in caplog.records if r.name == "memfit.plan.cache"]
    assert str(entry) in line and "planning again" in line
    assert plan(model, stack, seq_len=SEQ, meter=SimulatedMeter(BUDGET), cache_dir=tmp_path).cache_hit  # rebuilt


def test_the_longest_context_search_rebuilds_a_corrupt_entry(tmp_path):
    stack, model = _model(max_position_embeddings=4096)
    first = plan_max_seq_len(model, stack, meter=SimulatedMeter(0.8e6), cache_dir=tmp_path)
    (entry,) = tmp_path.glob("*.json")
    entry.write_text(entry.read_text()[:40])
    again = plan_max_seq_len(model, stack, meter=SimulatedMeter(0.8e6), cache_dir=tmp_path)
    assert not again.cache_hit and again.max_seq_len == first.max_seq_len


def test_entries_round_trip_with_their_checksum_and_the_back_off_keeps_it(tmp_path):
    path = tmp_path / "p.json"
    write_plan_cache(path, {"max_micro_batch": 8, "effective_batch": 16, "num_processes": 1, "rate": float("nan")})
    assert "checksum" in json.loads(path.read_text())
    assert read_plan_cache(path) == {"max_micro_batch": 8, "effective_batch": 16, "num_processes": 1, "rate": None}
    update_plan_cache(str(path), 4, {"step": 3})  # the loop's OOM back-off rewrites the entry: still trusted after
    assert read_plan_cache(path)["max_micro_batch"] == 4 and read_plan_cache(path)["backoffs"] == [{"step": 3}]


def test_the_back_off_leaves_a_corrupt_entry_to_be_rebuilt(tmp_path, caplog):
    path = tmp_path / "p.json"
    path.write_text('{"max_micro_batch": 8, "effec')
    with caplog.at_level(logging.WARNING):
        update_plan_cache(path, 4, {"step": 3})  # never fatal: training goes on
    assert not path.exists() and any("not used" in r.getMessage() for r in caplog.records)


def test_an_unusable_plan_cache_costs_only_the_shortcut(caplog):
    """--plan-cache /dev/null (or a read-only folder): the plan is measured and returned, two warning lines say that
    the entry could be neither read nor stored (the CLI refuses such a folder up front: core.files.check_cache_dir)."""
    stack, model = _model()
    with caplog.at_level(logging.WARNING, logger="memfit.plan.cache"):
        res = plan(model, stack, seq_len=SEQ, meter=SimulatedMeter(BUDGET), cache_dir="/dev/null")
    assert res.max_micro_batch > 0 and not res.cache_hit
    lines = [r.getMessage() for r in caplog.records if r.name == "memfit.plan.cache"]
    assert len(lines) == 2 and "could not be written" in lines[1]
