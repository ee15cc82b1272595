"""`memfit generate`: a finished run's fine-tuned model answers greedily (the same answer every time, the answer of
a plain greedy decode), --chat goes through the tokenizer's chat template, bad settings are one line."""
from __future__ import annotations

import pytest
import torch

from _models import tiny_config
from _tiny_run import shared_run
from test_train_command import tiny_tokenizer  # noqa: F401 (the session fixture)

from memfit.cli import main
from memfit.cli.generate import GenerateError, answer, prompt_ids

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


def test_generate_on_a_finished_run(tmp_path_factory, tiny_tokenizer, capsys):  # noqa: F811
    from memfit.recipes.saved_run import load_trained, read_run

    _, run_dir = shared_run(tmp_path_factory, tiny_tokenizer)
    assert main(["generate", str(run_dir), "the ocean", "--max-new-tokens", "6"]) == 0
    said = capsys.readouterr().out.strip()
    model = load_trained(read_run(run_dir))
    # endswith: a library imported earlier in this pytest process may hold a stale handle on the captured stdout
    assert said and said.endswith(answer(model, tiny_tokenizer, "the ocean", max_new_tokens=6))

    capsys.readouterr()  # the loading bar of the comparison above
    assert main(["generate", str(run_dir), "hello", "--chat"]) == 2  # the tiny tokenizer has no template
    assert main(["generate", str(run_dir), "hello", "--temperature", "nan"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "no chat template" in err[0] and "--temperature nan" in err[1]
