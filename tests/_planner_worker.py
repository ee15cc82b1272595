"""Body of the two-process planner test (module level so accelerate.debug_launcher can pickle it)."""

import json
import os
import sys


def plan_on_each_rank(out_dir: str) -> None:
    sys.path.insert(0, os.path.dirname(__file__))
    from accelerate import PartialState

    from _models import tiny_model
    from memfit import Stack
    from memfit.plan.planner import plan
    from memfit.plan.probe import SimulatedMeter

    state = PartialState(cpu=True)
    stack = Stack.from_spec("lora:dropout=0+gc")
    model = stack.apply_model(tiny_model(), stack.context("cpu"))
    budget = 3.0e6 if state.process_index == 0 else 2.2e6  # rank 1 is the smaller "GPU"
    res = plan(model, stack, seq_len=64, meter=SimulatedMeter(budget), cache_dir=os.path.join(out_dir, "cache"),
               target_effective_batch=64)
    with open(os.path.join(out_dir, f"rank{state.process_index}.json"), "w") as f:
        json.dump(res.to_dict(), f)
