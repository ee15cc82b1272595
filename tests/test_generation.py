"""memfit/generation.py: the answer is a plain greedy decode (the same every time), chat prompts go through the
tokenizer's template, and the model's training mode survives a sample."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from _models import tiny_config

sys.path.insert(0, str(Path(__file__).parent / "recipes"))
from test_finetune import tiny_tokenizer  # noqa: E402,F401 (the session fixture)

from memfit.generation import GenerateError, answer, prompt_ids  # noqa: E402

TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}<eos>{% endfor %}"
            "{% if add_generation_prompt %}<assistant>{% endif %}")


@pytest.fixture
def tiny(tiny_tokenizer):  # noqa: F811
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(tiny_config(vocab_size=len(tiny_tokenizer))).eval()


def greedy_by_hand(model, ids: torch.Tensor, steps: int) -> list[int]:
    out = []
    with torch.no_grad():
        for _ in range(steps):
            nxt = model(ids).logits[0, -1].argmax()
            out.append(int(nxt))
            ids = torch.cat([ids, nxt.view(1, 1)], dim=1)
    return out


def test_the_answer_is_the_greedy_continuation(tiny, tiny_tokenizer):  # noqa: F811
    tiny.generation_config.eos_token_id = None  # the random model may emit <eos>; compare all 8 tokens
    tokenizer = tiny_tokenizer
    tokenizer.eos_token_id  # noqa: B018
    want = greedy_by_hand(tiny, prompt_ids(tokenizer, "the ocean warms", False), 8)
    got = answer(tiny, tokenizer, "the ocean warms", max_new_tokens=8)
    assert got == answer(tiny, tokenizer, "the ocean warms", max_new_tokens=8)
    if tokenizer.eos_token_id not in want:
        assert got == tokenizer.decode(want, skip_special_tokens=True).strip()


def test_chat_uses_the_tokenizer_template_and_refuses_without_one(tiny_tokenizer):  # noqa: F811
    with pytest.raises(GenerateError, match="no chat template: drop --chat"):
        prompt_ids(tiny_tokenizer, "hi", chat=True)
    tokenizer = tiny_tokenizer.__class__(tokenizer_object=tiny_tokenizer.backend_tokenizer, eos_token="<eos>",
                                         pad_token="<pad>", chat_template=TEMPLATE)
    ids = prompt_ids(tokenizer, "why is the sea warming?", chat=True, system="be brief")
    assert tokenizer.decode(ids[0]) == "<system>be brief<eos><user>why is the sea warming?<eos><assistant>"


def test_a_sample_keeps_the_models_training_mode_and_the_callers_random_state(tiny, tiny_tokenizer):  # noqa: F811
    tiny.train()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    answer(tiny, tiny_tokenizer, "the ocean", max_new_tokens=2, temperature=1.0, seed=7)
    assert tiny.training
    assert torch.equal(torch.rand(3), expected)  # the sample's seed did not reset the caller's generator
