"""The per-file worker processes: results, exceptions, time limit and a child that dies come back separately."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from memfit.data.pdf import isolation
from memfit.data.pdf.isolation import run_isolated

linux_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="CPU time is read from /proc")


def _work(arg):
    if arg == "raise":
        raise ValueError("bad page tree")
    if arg == "sleep":
        time.sleep(30)
    if arg == "spin":
        while True:
            pass
    if arg == "die":
        os._exit(3)
    return arg.upper()


def test_each_input_gets_its_own_outcome():
    outcomes = run_isolated(_work, ["a", "raise", "sleep", "die", "spin", "b"], timeout_s=0.5, workers=2)
    assert [o.value for o in outcomes] == ["A", None, None, None, None, "B"]
    assert isinstance(outcomes[1].error, ValueError) and "bad page tree" in str(outcomes[1].error)
    assert outcomes[2].timed_out and not outcomes[2].ok  # hung without CPU: the wall-clock backstop
    assert outcomes[3].exitcode == 3 and not outcomes[3].ok
    assert outcomes[4].timed_out and not outcomes[4].ok
    assert outcomes[0].ok and outcomes[5].ok


@linux_proc
def test_the_limit_is_cpu_time_so_a_starved_child_is_not_stopped():
    # sleeping stands in for waiting on a saturated CPU: past timeout_s on the wall clock, but hardly any CPU used
    def nap(arg):
        time.sleep(arg)
        return "done"

    (outcome,) = run_isolated(nap, [1.5], timeout_s=1.0, workers=1)
    assert outcome.ok and outcome.value == "done" and outcome.seconds >= 1.5
    (spun,) = run_isolated(_work, ["spin"], timeout_s=0.5, workers=1)
    assert spun.timed_out and not spun.wall_limited and spun.cpu_seconds >= 0.5


@linux_proc
def test_a_child_stopped_by_the_wall_clock_among_siblings_is_retried_alone(tmp_path, monkeypatch):
    monkeypatch.setattr(isolation, "WALL_FACTOR", 1.0)

    def hangs_the_first_time(marker):
        if not marker.exists():
            marker.touch()
            time.sleep(30)
        return "second try"

    marker = tmp_path / "tried"
    outcomes = run_isolated(hangs_the_first_time, [marker, tmp_path / "other"], timeout_s=0.5, workers=2)
    assert [o.value for o in outcomes] == ["second try", "second try"]
    assert outcomes[0].ok and outcomes[0].seconds >= 0.5  # both tries counted
