"""Training at the planned micro-batch peaks where the plan said: the planner's probes (packed blocks, the stack's
own optimizer) and memfit.train measured by the same simulated meter."""

from __future__ import annotations

import contextlib

import torch

from memfit import Stack, TrainConfig, train
from memfit.plan.planner import plan
from memfit.plan.probe import SimulatedMeter
from _models import random_blocks, tiny_model

SEQ, BUDGET = 64, 3.0e6  # bytes: the tiny LoRA model fits a few sequences of 64 tokens
TOLERANCE = 0.05  # the loop's extra scalars and the loader's batches are not in the probe


def _packed_rows(n: int):
    """Blocks as the data pipeline packs them: two documents per block, position ids restarting at the second."""
    rows = random_blocks(n, SEQ, seed=1)
    for r in rows:
        r["position_ids"] = list(range(SEQ // 2)) + list(range(SEQ - SEQ // 2))
    return rows


def _metered(stack: Stack, model, meter: SimulatedMeter, exits: contextlib.ExitStack) -> Stack:
    """The stack, whose optimizer (made inside train) enters the meter with its state already allocated, as the
    planner's warm-up probe has it when the largest size is probed."""
    make = stack.make_optimizer

    def make_optimizer(net, ctx, lr, weight_decay=0.0):
        opt = make(net, ctx, lr, weight_decay)
        for group in opt.param_groups:
            for p in group["params"]:
                p.grad = torch.zeros_like(p)
        opt.step()  # zero gradients, no weight decay: allocates the moments, the weights stay as they are
        opt.zero_grad(set_to_none=True)
        exits.enter_context(meter.measure(net, opt))
        return opt

    object.__setattr__(stack, "make_optimizer", make_optimizer)
    return stack


def test_training_at_the_planned_size_peaks_where_the_plan_said(tmp_path):
    stack = Stack.from_spec("lora:dropout=0")
    model = stack.apply_model(tiny_model(), stack.context("cpu"))
    meter = SimulatedMeter(BUDGET)
    planned = plan(model, stack, seq_len=SEQ, meter=meter, cache_dir=tmp_path, packed=True)
    assert planned.max_micro_batch >= 2 and planned.peak_gib

    meter.reset()
    before = meter.peak()  # weights and what the plan left: training's own saved tensors must add to it
    steps = 3
    with contextlib.ExitStack() as exits:
        result = train(model, _metered(stack, model, meter, exits), _packed_rows(planned.max_micro_batch * steps),
                       TrainConfig(micro_batch=planned.max_micro_batch, max_steps=steps, lr=1e-3, warmup=0))
    assert result.steps == steps and result.micro_batch == planned.max_micro_batch
    peak, predicted = meter.peak(), planned.peak_gib * 2**30
    print(f"planned micro-batch {planned.max_micro_batch}: plan peak {predicted:.0f} B, training peak {peak:.0f} B")
    assert peak > before
    assert peak <= BUDGET, (peak, BUDGET)
    assert abs(peak - predicted) <= TOLERANCE * predicted, (peak, predicted)
