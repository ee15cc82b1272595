"""SIGINT/SIGTERM during training (issue 30): the step finishes, a checkpoint is saved, one line says how to resume,
and the signal handlers are the caller's again afterwards."""

from __future__ import annotations

import os
import signal
from typing import ClassVar

import pytest
from pydantic import BaseModel

import memfit
from memfit import Stack, TrainConfig
from memfit.core.loss import causal_lm_nll
from memfit.core.protocol import strategy_config
from memfit.training.interrupt import StopOnSignal, TrainingInterrupted
from _models import random_blocks, tiny_model


class SignalAtCall(BaseModel):
    """Test-only loss strategy: sends this process a signal during the forward of its `at`-th micro-batch."""

    model_config = strategy_config()
    name: ClassVar[str] = "signal_at_call"
    phase: ClassVar[int] = 60
    calls: ClassVar[int] = 0
    at: int = 3
    signum: int = int(signal.SIGINT)

    def describe(self):
        return "sends a signal mid-step"

    def spec_item(self):  # one spec whatever the call: the resumed run is the same run
        return self.name

    def compute_loss(self, model, batch, ctx):
        SignalAtCall.calls += 1
        if SignalAtCall.calls == self.at:
            os.kill(os.getpid(), self.signum)
        return causal_lm_nll(model, batch)


def _train(out, strategy=None, **overrides):
    stack = Stack([*Stack.from_spec("lora+ga2"), *([strategy] if strategy else [])])
    model = stack.apply_model(tiny_model(), stack.context("cpu"))
    cfg = dict(micro_batch=2, max_steps=5, lr=1e-2, progress=False, save_adapter=False, checkpoint_every=100,
               output_dir=str(out) if out else None)
    return memfit.train(model, stack, random_blocks(8, 16, seed=3), TrainConfig(**{**cfg, **overrides}))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_step_finishes_the_step_saves_and_says_how_to_resume(tmp_path, signum):
    SignalAtCall.calls = 0
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with pytest.raises(TrainingInterrupted) as info:  # the signal lands in step 2's first micro-batch
        _train(tmp_path, SignalAtCall(at=3, signum=int(signum)))
    err = info.value
    assert (err.step, err.exit_code, err.checkpoint.name) == (2, 128 + signum, "step-00000002")
    assert str(err).startswith(f"training stopped by {signal.Signals(signum).name} after step 2: the latest "
                               f"checkpoint is ") and "continue from step 2" in str(err) and "\n" not in str(err)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    res = _train(tmp_path, SignalAtCall(at=10**9))  # the same command again
    assert res.resumed_from.endswith("step-00000002") and res.steps == 5


def test_without_an_output_dir_the_line_says_nothing_was_saved():
    SignalAtCall.calls = 0
    with pytest.raises(TrainingInterrupted, match=r"after step 1: nothing was saved \(no output_dir\)"):
        _train(None, SignalAtCall(at=1))


def test_a_second_signal_acts_at_once():
    with pytest.raises(KeyboardInterrupt):
        with StopOnSignal() as stop:
            os.kill(os.getpid(), signal.SIGINT)
            assert stop.signum == signal.SIGINT
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_the_cli_turns_it_into_one_line_and_the_signal_exit_code(monkeypatch, capsys, tmp_path):
    from memfit.cli import main

    def interrupted(argv):
        raise TrainingInterrupted(int(signal.SIGTERM), 7, tmp_path / "checkpoints" / "step-00000007")

    monkeypatch.setattr("memfit.cli.train.cmd_train", interrupted)
    assert main(["train", "run.yaml"]) == 143
    err = capsys.readouterr().err.strip()
    assert err.startswith("memfit: training stopped by SIGTERM after step 7: the latest checkpoint is ")
    assert "continue from step 7" in err and "\n" not in err
