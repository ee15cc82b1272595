"""The one training step (memfit.core.step): window normalisation, the engine routes, autocast from the stack, and
that the planner's probe runs this same step."""

from __future__ import annotations

import contextlib
import re
import weakref
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from memfit import Stack
from memfit.core.step import Engine, autocast_for, train_step
from memfit.plan.probe import SimulatedMeter, random_batch, run_probe
from _models import random_blocks, tiny_model

PACKAGE = Path(__file__).resolve().parents[2] / "memfit"


def _lora(seed: int = 0):
    stack = Stack.from_spec("lora:dropout=0")
    return stack, stack.apply_model(tiny_model(seed), stack.context("cpu"))


def _batch(rows):
    return {k: torch.tensor([r[k] for r in rows]) for k in ("input_ids", "labels")}


def _trainable(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def test_grep_finds_one_training_step():
    """Every backward of a training step is the step's own (custom autograd Functions' recomputes aside)."""
    calls = {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
             if re.search(r"(?<!autograd)\.backward\(", p.read_text())}
    assert calls == {"core/step.py"}


def test_a_window_of_micro_batches_is_one_big_batch():
    rows = random_blocks(4, 16, seed=2)
    rows[0]["labels"] = [-100] * 12 + rows[0]["labels"][12:]  # unequal token counts: per-micro-batch means differ
    deltas = []
    for pieces in ([rows], [rows[:2], rows[2:]], [[r] for r in rows]):
        stack, model = _lora()
        before = _trainable(model)
        out = train_step(model, torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0), stack,
                         stack.context("cpu"), [_batch(p) for p in pieces])
        assert out.updated and out.tokens == 4 + 3 * 15
        deltas.append({n: before[n] - p.detach() for n, p in model.named_parameters() if p.requires_grad})
    for other in deltas[1:]:
        for name, d in deltas[0].items():
            torch.testing.assert_close(other[name], d, rtol=1e-5, atol=1e-7)


def test_the_probe_steps_the_training_step():
    """A probe with a learning rate changes the weights exactly as train_step on the same batch does."""
    results = []
    for use_probe in (True, False):
        stack, model = _lora()
        ctx = stack.context("cpu")
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
        torch.manual_seed(5)
        if use_probe:
            assert run_probe(model, opt, stack, ctx, SimulatedMeter(1e9), 2, 16).fits
        else:
            train_step(model, opt, stack, ctx, [random_batch(2, 16, model.config.vocab_size, "cpu")])
        results.append(_trainable(model))
    for name, w in results[0].items():
        torch.testing.assert_close(results[1][name], w, rtol=0, atol=0)


def test_non_finite_loss_skips_the_update():
    stack, model = _lora()
    with torch.no_grad():
        model.get_input_embeddings().weight.fill_(float("nan"))
    before = _trainable(model)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
    out = train_step(model, opt, stack, stack.context("cpu"), [_batch(random_blocks(2, 8))], max_grad_norm=1.0)
    assert not out.updated and out.loss != out.loss  # NaN
    assert all(torch.equal(before[n], p.detach()) for n, p in model.named_parameters() if p.requires_grad)


@pytest.mark.parametrize("spec, dtype", [("lora+bf16", torch.bfloat16), ("lora", None)])
def test_autocast_comes_from_the_stack(spec, dtype):
    stack = Stack.from_spec(spec)
    seen = []
    layer = torch.nn.Linear(2, 2)
    layer.register_forward_hook(lambda *a: seen.append(torch.is_autocast_enabled("cpu") and
                                                        torch.get_autocast_dtype("cpu")))
    with autocast_for(stack, stack.context("cpu")):
        layer(torch.ones(1, 2))
    assert seen == [dtype or False]


class _FakeAccelerator:
    """Records what the step asks of accelerate; refuses any attribute write (accelerate's internals stay its own)."""

    def __init__(self, world=2, steps=4, deepspeed=False):
        calls = []
        kind = "DEEPSPEED" if deepspeed else "MULTI_CPU"
        for key, value in dict(calls=calls, num_processes=world, gradient_accumulation_steps=steps, scaler=None,
                               optimizer_step_was_skipped=False,
                               state=SimpleNamespace(distributed_type=kind)).items():
            object.__setattr__(self, key, value)

    def __setattr__(self, key, value):
        raise AssertionError(f"the training step wrote accelerator.{key}")

    @contextlib.contextmanager
    def no_sync(self, model):
        self.calls.append("no_sync")
        yield

    def backward(self, loss):
        self.calls.append(("backward", round(loss.item(), 6)))
        loss.backward()

    def reduce(self, value, reduction):
        self.calls.append("reduce")
        return value * self.num_processes  # the other rank holds the same numbers

    def clip_grad_norm_(self, params, max_norm):
        return torch.nn.utils.clip_grad_norm_(params, max_norm)


def test_ddp_engine_syncs_once_per_window_and_scales_explicitly():
    stack, model = _lora()
    acc = _FakeAccelerator(world=2, steps=4)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.0)
    batches = [_batch(random_blocks(1, 8, seed=i)) for i in range(3)]
    out = train_step(model, opt, stack, stack.context("cpu"), batches, engine=Engine(acc))
    syncs = [c for c in acc.calls if c == "no_sync"]
    assert len(syncs) == 2  # every micro-batch but the last: one gradient all-reduce per window
    assert out.tokens == 2 * 3 * 7  # both ranks' tokens
    losses = [c[1] for c in acc.calls if isinstance(c, tuple)]
    # each share is nll * world / window tokens, times the 4 steps accelerate divides by again: after DDP's mean over
    # the 2 ranks (equal here) the gradient is that of sum(NLL) / sum(tokens), the window's loss
    assert sum(losses) / 4 == pytest.approx(out.loss, rel=1e-5)


def test_deepspeed_engine_sets_the_boundary_on_the_last_micro_batch_only():
    events = []
    stack, inner = _lora()

    class FakeDeepSpeedEngine(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = inner

        def forward(self, **kw):
            return self.inner(**kw)

        def set_gradient_accumulation_boundary(self, last):
            events.append(("boundary", last))

        def backward(self, loss, scale_wrt_gas=True):
            events.append(("backward", scale_wrt_gas))
            loss.backward()

        def step(self):
            events.append("step")

    acc = _FakeAccelerator(world=1, steps=2, deepspeed=True)
    model = FakeDeepSpeedEngine()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.0)
    train_step(model, opt, stack, stack.context("cpu"), [_batch(random_blocks(1, 8, seed=i)) for i in range(2)],
               engine=Engine(acc))
    assert events == [("boundary", False), ("backward", False), ("boundary", True), ("backward", False), "step"]
    assert "no_sync" not in acc.calls


class _Sentinel:
    """An object only a micro-batch's autograd graph holds: it dies with the graph."""


class _HeldByTheGraph(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, sentinel):
        ctx.sentinel = sentinel
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def test_a_micro_batch_graph_is_gone_before_the_next_forward():
    """A graph kept alive into the next micro-batch's forward pins the freed activations' host heap apart (the CPU
    peer job peaked 0.5 GiB above HF Trainer's): each micro-batch's graph must die with its backward."""
    stack, model = _lora()
    graphs, alive_at_forward = [], []

    def check_before(_module, _args):
        alive_at_forward.append(sum(ref() is not None for ref in graphs))

    def hold(_module, _args, out):
        sentinel = _Sentinel()
        graphs.append(weakref.ref(sentinel))
        out.logits = _HeldByTheGraph.apply(out.logits, sentinel)
        return out

    model.register_forward_pre_hook(check_before)
    model.register_forward_hook(hold)
    rows = random_blocks(3, 16, seed=1)
    train_step(model, torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1), stack,
               stack.context("cpu"), [_batch([r]) for r in rows])
    assert alive_at_forward == [0, 0, 0]
    assert all(ref() is None for ref in graphs)
