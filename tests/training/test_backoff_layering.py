"""Importing the training loop (what every rank does) must not pull in the planner, its probes, the model loader or
the memory model: the loop sits above them only through the small plan.cache / plan.oom modules."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from _models import REPO

HEAVY = ["memfit.plan.planner", "memfit.plan.probe", "memfit.plan.memory", "memfit.models", "memfit.recipes.finetune"]


def test_importing_the_loop_leaves_planner_probe_loader_and_memory_model_out():
    code = "import json, sys, memfit.training.loop; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)}).stdout
    loaded = set(json.loads(out.splitlines()[-1]))
    assert "memfit.training.backoff" in loaded
    assert [m for m in HEAVY if m in loaded] == []
