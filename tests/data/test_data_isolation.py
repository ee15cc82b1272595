"""The per-file worker processes: results, exceptions, time limit and a child that dies come back separately."""
from __future__ import annotations

import os
import time

from memfit.data.isolation import run_isolated


def _work(arg):
    if arg == "raise":
        raise ValueError("bad page tree")
    if arg == "sleep":
        time.sleep(30)
    if arg == "die":
        os._exit(3)
    return arg.upper()


def test_each_input_gets_its_own_outcome():
    start = time.monotonic()
    outcomes = run_isolated(_work, ["a", "raise", "sleep", "die", "b"], timeout_s=1.0, workers=2)
    assert time.monotonic() - start < 10  # the sleeper was killed, not waited for
    assert [o.value for o in outcomes] == ["A", None, None, None, "B"]
    assert isinstance(outcomes[1].error, ValueError) and "bad page tree" in str(outcomes[1].error)
    assert outcomes[2].timed_out and not outcomes[2].ok
    assert outcomes[3].exitcode == 3 and not outcomes[3].ok
    assert outcomes[0].ok and outcomes[4].ok
