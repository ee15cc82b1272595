"""The learning-rate schedule and its continuation when a finished run is resumed with a larger max_steps (issue 30)."""

from __future__ import annotations

import math
from typing import ClassVar

import pytest
import torch
from pydantic import BaseModel

import memfit
from memfit import Stack, TrainConfig
from memfit.core.protocol import strategy_config
from memfit.training.schedule import continue_schedule, lr_scheduler
from _models import random_blocks, tiny_model

LR = 1e-2


class RecordingSGD(BaseModel):
    """Test-only optimizer strategy: SGD that notes the learning rate of every update it makes."""

    model_config = strategy_config()
    name: ClassVar[str] = "recording_sgd"
    phase: ClassVar[int] = 70
    rates: ClassVar[list[float]] = []

    def describe(self):
        return "SGD recording its learning rates"

    def make_optimizer(self, params, ctx, lr, weight_decay):
        class Recording(torch.optim.SGD):
            def step(self, closure=None):
                RecordingSGD.rates.append(self.param_groups[0]["lr"])
                return super().step(closure)

        return Recording(params, lr=lr)


def _run(model, stack, out, max_steps, warmup, epochs=1.0):
    cfg = TrainConfig(micro_batch=2, max_steps=max_steps, epochs=epochs, lr=LR, warmup=warmup, scheduler="cosine",
                      progress=False, output_dir=str(out), save_adapter=False, checkpoint_every=1, max_grad_norm=None)
    return memfit.train(model, stack, random_blocks(8, 16), cfg)


def _cosine(step: int, total: int, warm: int) -> float:
    """The documented schedule: lr of step `step` (1-based) = the schedule's value after step - 1 steps."""
    done = step - 1
    if done < warm:
        return LR * done / max(1, warm)
    return LR * 0.5 * (1 + math.cos(math.pi * (done - warm) / max(1, total - warm)))


@pytest.mark.parametrize("warmup", [0.0, 0.5])
def test_a_finished_run_extended_trains_every_new_step_on_the_new_schedule(tmp_path, warmup):
    stack = Stack([*Stack.from_spec("lora:dropout=0"), RecordingSGD()])
    model = stack.apply_model(tiny_model(), stack.context("cpu"))
    RecordingSGD.rates = []
    _run(model, stack, tmp_path, 2, warmup)
    assert RecordingSGD.rates == pytest.approx([_cosine(s, 2, round(warmup * 2)) for s in (1, 2)])
    after_two = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    RecordingSGD.rates = []
    res = _run(model, stack, tmp_path, 5, warmup)  # the same run, extended from 2 to 5 steps
    assert res.resumed_from and res.steps == 5
    warm = round(warmup * 5)
    assert RecordingSGD.rates[0] > 0
    assert RecordingSGD.rates == pytest.approx([_cosine(s, 5, warm) for s in (3, 4, 5)])
    moved = [n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(p, after_two[n])]
    assert moved, "the extended run did not change the weights"


def test_more_epochs_extend_the_schedule_like_more_steps(tmp_path):
    stack = Stack([*Stack.from_spec("lora:dropout=0"), RecordingSGD()])
    model = stack.apply_model(tiny_model(), stack.context("cpu"))
    _run(model, stack, tmp_path, None, 0.0, epochs=1.0)  # 8 rows / micro-batch 2: 4 steps
    RecordingSGD.rates = []
    res = _run(model, stack, tmp_path, None, 0.0, epochs=2.0)
    assert res.steps == 8 and RecordingSGD.rates == pytest.approx([_cosine(s, 8, 0) for s in (5, 6, 7, 8)])


def test_continue_schedule_is_the_identity_for_a_resume_of_the_same_length():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    sched = lr_scheduler("cosine", opt, 0.25, 8)
    for _ in range(3):
        opt.step()
        sched.step()
    before = opt.param_groups[0]["lr"]
    assert continue_schedule(sched) == pytest.approx([before]) and opt.param_groups[0]["lr"] == pytest.approx(before)
