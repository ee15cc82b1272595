"""The documented bounds of every numeric run setting, in one place: the run config's fields and the capacity
commands' flags (memfit plan/bench/estimate/eval) both take them from here, so `--margin 5` is refused the same way
by `memfit train` and `memfit plan`, at parse time, before any model or data is loaded.

Why these bounds:
- every float must be finite: an infinite warm-up or epoch count never finishes, a NaN compares false everywhere;
- counts stay below 2**31: a step, batch or token count beyond it overflows torch's int32 indexing and the
  schedulers' arithmetic long before it could be reached;
- a peak learning rate above 1.0 diverges for every model memfit trains (AdamW's update is ~lr per weight; a
  fine-tune uses 1e-5..1e-2), so a larger one is a typo, not a setting;
- seeds are what numpy's seeding accepts (0 .. 2**32-1): accelerate's set_seed seeds numpy too;
- the simulated CPU device holds at least 1 MiB (the tests' tiny models fit a few sequences in 1.5 MB; a budget
  below the loaded model is answered by the planner's "not one sequence fits" line) and at most 64 TiB;
- margins are a fraction of the device kept free: [0, 1).
"""
from __future__ import annotations

import math
from typing import Any

MAX_COUNT = 2**31 - 1
MAX_SEED = 2**32 - 1
MAX_LR = 1.0
MAX_EPOCHS = 1e6
CPU_BUDGET_GIB = (1 / 1024, 65536.0)
MARGIN = (0.0, 1.0)  # [low, high)


def number_problem(value: Any) -> str | None:
    """Why `value` cannot be a run setting's number (non-finite float, integer beyond MAX_COUNT), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value} is not a finite number"
    if isinstance(value, int) and abs(value) > MAX_COUNT:
        return f"{value} is beyond the largest count memfit accepts ({MAX_COUNT})"
    return None
