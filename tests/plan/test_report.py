"""Reports: the table, Markdown, JSON round trip and PNG of plan rows, and the auto search's frontier."""

from __future__ import annotations

import json

from memfit.plan.auto import AutoResult, FrontierRow
from memfit.plan.planner import PlanResult
from memfit.plan.report import format_frontier, format_table, load_results, to_markdown, write_auto_report, write_report


def _rows():
    return [PlanResult("lora+gc", 512, 40, 2, 80, peak_gib=70.5, tokens_per_s=12345.0,
                       probes=[{"micro_batch": 1, "fits": True}], versions={"torch": "2.x"}),
            PlanResult("lora+q4|x", 2048, 7, 12, 84, predicted_max=8, predicted_error_pct=14.3)]


def test_table_shows_every_row_and_dashes_for_unknowns():
    lines = format_table(_rows()).splitlines()
    assert lines[0].split()[:2] == ["stack", "seq"] and set(lines[1]) == {"-"}
    assert "12,345" in lines[2] and "70.5" in lines[2]
    assert lines[3].split()[0] == "lora+q4|x" and " - " in lines[3] and "+14" in lines[3]


def test_markdown_escapes_pipes_and_lists_versions():
    md = to_markdown(_rows(), {"title": "T", "model": "m", "nested": {"skip": 1}})
    assert md.startswith("# T") and "lora+q4\\|x" in md and "- **model**: m" in md
    assert "torch 2.x" in md and "nested" not in md


def test_report_files_round_trip(tmp_path):
    paths = write_report(_rows(), tmp_path, "p", {"title": "t"})
    assert all(p.exists() and p.stat().st_size > 0 for p in paths.values())
    back = load_results(paths["json"])
    assert [r.to_dict() for r in back] == [r.to_dict() for r in _rows()]
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"


def _auto():
    rows = [FrontierRow("lora+cce", "exact", 12, 8, 2, 16, 5000.0, 3.2, 11, 6, 4.0),
            FrontierRow("lora+gc", "exact", 40, 16, 1, 16, 4000.0, 2.1, 44, 7, 5.0)]
    return AutoResult("lora+cce", "lora+cce: highest measured tokens/s", 512, 16, rows,
                      [{"stack": "lora+q4", "reason": "x"}], probe_count=13, probe_budget=60, search_seconds=9.0)


def test_frontier_marks_the_winner_and_says_why():
    text = format_frontier(_auto())
    assert "* lora+cce" in text and "  lora+gc" in text and "5,000" in text
    assert "13 probes (budget 60)" in text and "1 stacks pruned" in text and text.endswith("highest measured tokens/s")


def test_auto_report_json_is_machine_readable(tmp_path):
    paths = write_auto_report(_auto(), tmp_path, "auto", {"model": "m"}, json_path=tmp_path / "sub" / "out.json")
    data = json.loads(paths["json"].read_text())
    assert data["winner"] == "lora+cce" and data["probe_count"] == 13 and data["search_seconds"] == 9.0
    assert [r["stack"] for r in data["frontier"]] == ["lora+cce", "lora+gc"] and data["meta"]["model"] == "m"
    assert paths["png"].read_bytes()[:4] == b"\x89PNG" and "winner" in paths["txt"].read_text()


def test_a_full_disk_while_writing_reports_keeps_the_previous_files_whole(tmp_path, monkeypatch):
    import errno
    import os

    import pytest

    before = write_auto_report(_auto(), tmp_path, "auto")
    old = {name: path.read_bytes() for name, path in before.items()}

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        write_auto_report(_auto(), tmp_path, "auto", {"model": "changed"})
    monkeypatch.undo()
    assert {name: path.read_bytes() for name, path in before.items()} == old  # the JSON, table and PNG as they were
    assert sorted(os.listdir(tmp_path)) == ["auto.json", "auto.png", "auto.txt"]  # no truncated or temporary file
