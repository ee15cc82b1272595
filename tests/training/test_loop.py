"""The accelerate training loop: exact token-weighted accumulation, learning, determinism, saving."""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch
from pydantic import BaseModel

import memfit
from memfit import Stack, TrainConfig
from memfit.core.protocol import strategy_config
from _models import random_blocks, tiny_model


class PlainSGD(BaseModel):
    """Test-only strategy: with SGD(lr=1) the parameter change *is* the gradient, so scale errors show."""

    model_config = strategy_config()
    name: ClassVar[str] = "plain_sgd"
    phase: ClassVar[int] = 70

    def describe(self):
        return "SGD"

    def make_optimizer(self, params, ctx, lr, weight_decay):
        return torch.optim.SGD(params, lr=lr)


def _rows_with_unequal_token_counts():
    rows = random_blocks(4, 24, seed=3)
    rows[0]["labels"] = [-100] * 20 + rows[0]["labels"][20:]  # 3 predicted tokens instead of 23
    rows[3]["labels"] = [-100] * 10 + rows[3]["labels"][10:]
    return rows


def _one_step(micro_batch: int, ga: int):
    stack = Stack([*Stack.from_spec(f"lora:dropout=0+ga{ga}"), PlainSGD()])
    model = stack.apply_model(tiny_model(), stack.context("cpu"))
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    cfg = TrainConfig(micro_batch=micro_batch, max_steps=1, lr=1.0, max_grad_norm=None, warmup=0,
                      scheduler="constant", progress=False)
    res = memfit.train(model, stack, _rows_with_unequal_token_counts(), cfg)
    delta = {n: (before[n] - p.detach()) for n, p in model.named_parameters() if p.requires_grad}
    return res, delta


def _reference_gradient():
    """sum of token NLL over the whole batch / total predicted tokens, computed plainly in one pass."""
    model = Stack.from_spec("lora:dropout=0").apply_model(tiny_model(), Stack([]).context("cpu"))
    rows = _rows_with_unequal_token_counts()
    ids = torch.tensor([r["input_ids"] for r in rows])
    labels = torch.tensor([r["labels"] for r in rows])
    logits = model(input_ids=ids).logits[:, :-1]
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100)
    loss.backward()
    return loss.item(), {n: p.grad for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("micro_batch, ga", [(2, 2), (1, 4)])
def test_accumulation_equals_one_big_batch_with_unequal_token_counts(micro_batch, ga):
    big, big_delta = _one_step(micro_batch=4, ga=1)
    acc, acc_delta = _one_step(micro_batch=micro_batch, ga=ga)
    ref_loss, ref_grad = _reference_gradient()
    assert acc.effective_batch == big.effective_batch == 4
    assert acc.losses[0] == pytest.approx(ref_loss, rel=1e-6) and big.losses[0] == pytest.approx(ref_loss, rel=1e-6)
    for name, g in ref_grad.items():
        # fp32 summation order differs between the runs: 1e-6 relative is what the arithmetic allows
        torch.testing.assert_close(big_delta[name], g, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(acc_delta[name], g, rtol=1e-5, atol=1e-7)


def test_mean_of_micro_batch_means_would_differ():
    """Guards the test above: with these rows the naive per-micro-batch mean is measurably different."""
    rows = _rows_with_unequal_token_counts()
    model = tiny_model()
    means, total_nll, total_tok = [], 0.0, 0
    for r in rows:
        ids, lab = torch.tensor([r["input_ids"]]), torch.tensor([r["labels"]])
        nll = torch.nn.functional.cross_entropy(model(input_ids=ids).logits[0, :-1], lab[0, 1:], ignore_index=-100,
                                                reduction="sum")
        n = int((lab[0, 1:] != -100).sum())
        means.append(nll.item() / n)
        total_nll, total_tok = total_nll + nll.item(), total_tok + n
    assert abs(sum(means) / len(means) - total_nll / total_tok) > 1e-3


def test_loop_learns_a_repetitive_corpus_and_writes_a_loadable_adapter(tmp_path):
    from peft import PeftModel

    stack = Stack.from_spec("lora+gc+ga2")
    model = stack.apply_model(tiny_model(), stack.context("cpu"))
    cfg = TrainConfig(micro_batch=4, max_steps=12, lr=1e-2, output_dir=str(tmp_path), progress=False)
    res = memfit.train(model, stack, random_blocks(32, 32, pattern=True), cfg)
    assert res.losses[-1] < res.losses[0] - 0.5
    assert res.effective_batch == 8 and res.tokens == 12 * 8 * 31
    assert (tmp_path / "adapter" / "adapter_model.safetensors").exists()
    reloaded = PeftModel.from_pretrained(tiny_model(), tmp_path / "adapter")
    trained = dict(model.named_parameters())
    for name, p in reloaded.named_parameters():
        if "lora_" in name:
            torch.testing.assert_close(p, trained[name.replace(".default", ".default")])


def test_runs_are_deterministic_on_cpu():
    def run():
        stack = Stack.from_spec("lora+ga2")
        model = stack.apply_model(tiny_model(), stack.context("cpu"))
        cfg = TrainConfig(micro_batch=2, max_steps=4, lr=5e-3, progress=False, seed=7)
        return memfit.train(model, stack, random_blocks(16, 16, seed=1), cfg).losses

    assert run() == run()


def test_full_fine_tune_and_tensorboard_logging(tmp_path):
    stack = Stack([])
    model = stack.apply_model(tiny_model(), stack.context("cpu"))
    cfg = TrainConfig(micro_batch=4, max_steps=3, lr=1e-3, output_dir=str(tmp_path), log_with="tensorboard",
                      progress=False, save_adapter=False)
    res = memfit.train(model, stack, random_blocks(8, 16), cfg)
    assert res.steps == 3 and any(tmp_path.rglob("events.out.tfevents*"))


def test_non_finite_loss_stops_the_run():
    stack = Stack.from_spec("lora")
    model = stack.apply_model(tiny_model(), stack.context("cpu"))
    with torch.no_grad():
        model.get_input_embeddings().weight.fill_(float("nan"))
    cfg = TrainConfig(micro_batch=2, max_steps=10, progress=False, max_bad_steps=2)
    with pytest.raises(memfit.NumericError, match="non-finite for 2 consecutive steps"):
        memfit.train(model, stack, random_blocks(8, 16), cfg)


def test_the_loop_refuses_blocks_of_another_length_than_planned():
    stack = Stack.from_spec("lora")
    model = stack.apply_model(tiny_model(), stack.context("cpu"))
    cfg = TrainConfig(micro_batch=2, max_steps=1, progress=False, seq_len=16)
    with pytest.raises(ValueError, match=r"training blocks have 24 tokens but the plan was made for 16") as info:
        memfit.train(model, stack, random_blocks(4, 24), cfg)
    assert "\n" not in str(info.value)
    assert memfit.train(model, stack, random_blocks(4, 16), cfg).steps == 1


def test_the_micro_batch_reaches_the_loop_from_its_config_alone():
    """An Accelerator built for another micro-batch does not change the window: the stack decides it at the
    configured micro-batch, and the effective batch is the one asked for."""
    from memfit.training.loop import make_accelerator

    stack = Stack.from_spec("lora+ga:effective_batch=8")
    model = stack.apply_model(tiny_model(), stack.context("cpu"))
    acc = make_accelerator(stack, 4)  # would be 2 accumulation steps
    res = memfit.train(model, stack, random_blocks(16, 16), TrainConfig(micro_batch=2, max_steps=1, progress=False),
                       accelerator=acc)
    assert (res.micro_batch, res.grad_accum, res.effective_batch, res.tokens) == (2, 4, 8, 8 * 15)


def test_periodic_evaluation_of_chat_pieces_scores_the_answer_tokens():
    """eval_every on chat data scores what the loss trained on (the labels' tokens), as the run's held-out numbers
    do; plain pieces are scored on every token."""
    from memfit.evaluation import perplexity
    from memfit.training.loop import evaluate

    model = tiny_model().eval()
    ids = list(range(3, 43))
    chat = [{"name": "c", "input_ids": ids, "labels": [-100] * 25 + ids[25:], "n_bytes": 40}]
    cfg = TrainConfig(eval_context=16, eval_batch_size=2)
    scored = evaluate(model, chat, cfg, None)
    assert scored["tokens"] == perplexity(model, chat, context_length=16, only_labels=True).tokens < len(ids) - 1
    plain = [{"name": "p", "input_ids": ids, "n_bytes": 40}]
    assert evaluate(model, plain, cfg, None)["tokens"] == len(ids) - 1
