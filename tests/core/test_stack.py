"""Stack construction, spec round-trips, validation of impossible combinations, order independence."""

from __future__ import annotations

import itertools
from typing import ClassVar

import pytest
import torch
from pydantic import BaseModel

import memfit
from memfit import Stack, StackError
from memfit.core.protocol import strategy_config
from _models import random_blocks, tiny_model


def test_spec_round_trip_and_order_of_listing_does_not_matter():
    a = Stack.from_spec("lora+q4+bf16+gc+ga8+adam8")
    b = Stack.from_spec("adam8+ga8+gc+bf16+q4+lora")
    assert a == b
    assert a.spec == "quant4bit+bf16+lora+gc+adam8+ga8"
    assert Stack.from_spec(a.spec) == a
    assert Stack.from_spec("lora:r=16,alpha=64,targets=q_proj|v_proj").get("lora").targets == ["q_proj", "v_proj"]
    assert Stack.from_spec("lora32").get("lora").r == 32
    assert Stack.from_spec("ga:effective_batch=64").get("ga").accumulation_steps(micro_batch=6, num_processes=2) == 6


def test_dict_and_yaml_forms(tmp_path):
    y = tmp_path / "stack.yaml"
    y.write_text("strategies:\n  - lora\n  - {name: ga, steps: 4}\n  - name: gc\n")
    assert Stack.coerce(str(y)) == Stack.from_spec("lora+ga4+gc")
    assert Stack.from_dict(["lora", "fp16"]) == Stack.from_spec("fp16+lora")


@pytest.mark.parametrize("spec, needle", [
    ("q4", "without LoRA"),  # frozen 4-bit weights cannot be trained
    ("q8+gc", "without LoRA"),
    ("lora+q4+q8", "keep one"),
    ("fp16+gc", "fp16 full fine-tuning"),  # loss scaler needs fp32 masters
    ("lora+q4:compute_dtype=bf16+fp16", "promotes the residual stream"),  # fp16 autocast over bf16 weights
    ("lora+lora", "appears twice"),
    ("bf16+fp16", "appears twice"),
    ("lora+nosuch", "unknown strategy 'nosuch'"),
    ("lora:rank=4", "rank"),  # unknown argument
    ("lora:r=0", "greater than 0"),
    ("ga", "exactly one of steps"),
])
def test_impossible_combinations_fail_with_the_conflict_named(spec, needle):
    with pytest.raises(StackError, match=needle):
        Stack.from_spec(spec)


def test_yaml_with_unknown_keys_or_wrong_types_is_rejected(tmp_path):
    with pytest.raises(StackError, match="invalid stack config"):
        Stack.from_dict({"strategies": ["lora"], "extra": 1})
    with pytest.raises(StackError, match="steps"):
        Stack.from_dict({"strategies": [{"name": "ga", "steps": "many"}]})


def test_eight_bit_optimizer_without_bitsandbytes(monkeypatch):
    import memfit.strategies.optimizer8bit as opt8

    monkeypatch.setattr(opt8, "bitsandbytes_available", lambda: False)
    with pytest.raises(StackError, match="needs bitsandbytes"):
        Stack.from_spec("lora+adam8")


class _LossA(BaseModel):
    model_config = strategy_config()
    name: ClassVar[str] = "loss_a"
    phase: ClassVar[int] = 60

    def describe(self):
        return "a"

    def compute_loss(self, model, batch, ctx):
        raise AssertionError


class _LossB(_LossA):
    name: ClassVar[str] = "loss_b"


def test_two_strategies_claiming_an_exclusive_hook():
    with pytest.raises(StackError, match="exclusive hook 'compute_loss'"):
        Stack([_LossA(), _LossB()])


def test_describe_lists_each_strategy_and_its_hooks():
    text = Stack.from_spec("lora+gc+ga2").describe()
    assert "lora" in text and "transform_model" in text and "2 micro-batches" in text


def _apply_and_loss(spec_items):
    stack = Stack.from_spec("+".join(spec_items))
    torch.manual_seed(0)
    model = stack.apply_model(tiny_model(), stack.context("cpu"))
    batch = {k: torch.tensor(v)[None] for k, v in random_blocks(1, 16)[0].items()}
    nll, n = stack.compute_loss(model, batch, stack.context("cpu"))
    nll.backward()
    trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    grads = torch.cat([p.grad.flatten() for _, p in sorted(model.named_parameters()) if p.grad is not None])
    return trainable, nll.item(), grads


def test_composition_in_any_order_gives_the_same_model_and_gradients():
    items = ["lora:dropout=0", "gc", "ga2"]
    ref = _apply_and_loss(items)
    for perm in itertools.permutations(items):
        got = _apply_and_loss(perm)
        assert got[0] == ref[0] and got[1] == pytest.approx(ref[1], rel=1e-6)
        torch.testing.assert_close(got[2], ref[2])


def test_model_is_left_in_training_mode_so_checkpointing_acts(tiny_llama):
    tiny_llama.eval()
    stack = Stack.from_spec("gc")
    model = stack.apply_model(tiny_llama, stack.context("cpu"))
    assert model.training and all(m.training for m in model.modules())


def test_public_api_is_importable():
    for name in memfit.__all__:
        assert hasattr(memfit, name), name


@pytest.mark.parametrize("spec", ["", "+++", " + "])
def test_a_spec_with_no_strategy_is_refused_not_a_silent_full_fine_tune(spec):
    with pytest.raises(StackError, match="a stack spec with no strategy") as err:
        Stack.from_spec(spec)
    assert "\n" not in str(err.value)
    assert len(Stack.from_spec("none")) == 0 and len(Stack.coerce(None)) == 0  # the way to ask for no strategy


def test_an_empty_item_is_refused_and_a_typo_gets_the_fix_not_the_whole_list():
    with pytest.raises(StackError, match="an empty item in the stack spec 'lora\\+\\+gc'"):
        Stack.from_spec("lora++gc")
    with pytest.raises(StackError) as err:
        Stack.from_spec("lorra+gc")
    message = str(err.value)
    assert message.startswith("unknown strategy 'lorra': did you mean 'lora'?") and "adam8" not in message
    assert "\n" not in message
