"""memfit.recipes.planning: one PlanResult carries the micro-batch and the block length to the loop."""
from types import SimpleNamespace

import pytest
import torch

from memfit import Stack
from memfit.core.errors import ConfigError
from memfit.plan.planner import PlanResult
from memfit.recipes.planning import check_blocks, fixed_plan, is_capped, plan_training
from memfit.recipes.sections import PlanSection

STATE = SimpleNamespace(num_processes=1, device=torch.device("cpu"))


def test_a_fixed_micro_batch_skips_the_planner_and_reaches_the_target():
    said = []
    planned = plan_training(None, Stack.coerce("lora+ga:effective_batch=8"), STATE, lambda: None,
                            PlanSection(micro_batch=3), seq_len=64, eval_batch_size=2, packed=True, target=8,
                            say=said.append)  # no model: nothing may be probed
    assert (planned.micro_batch, planned.grad_accum, planned.effective_batch) == (3, 3, 9)
    assert planned.seq_len == 64 and planned.probes == [] and "planner is skipped" in said[0]
    assert not is_capped(planned, 3)


def test_without_a_target_the_stacks_own_accumulation_applies():
    assert fixed_plan(Stack.coerce("lora+ga4"), 32, 2, 1, None, "cpu").grad_accum == 4


def test_blocks_of_another_length_than_planned_are_refused():
    planned = PlanResult(stack="lora", seq_len=64, max_micro_batch=2, grad_accum=1, effective_batch=2)
    check_blocks([{"input_ids": [0] * 64}] * 3, 64, planned)
    with pytest.raises(ConfigError, match=r"hold \[32\] tokens but the plan is for 64"):
        check_blocks([{"input_ids": [0] * 32}], 32, planned)
