"""build_bundle: one builder for both storages; what the loss counts (chat: the assistant's tokens unless
train_on_inputs) and evaluation sets that keep that mask."""
from __future__ import annotations

import pytest
from pdf_factory import english_page


CHATML = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<eos>\n{% endfor %}"
          "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def _chat_sources(tmp_path, with_text=False):
    import json

    from memfit.data import TableSource, TextSource

    rows = [{"messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                          {"role": "assistant", "content": f"It is {2 * i}."}]} for i in range(6)]
    (tmp_path / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    sources = [TableSource(path=str(tmp_path / "chat.jsonl"))]  # format auto: the messages column means chat
    if with_text:
        (tmp_path / "notes").mkdir()
        for n in range(3):
            (tmp_path / "notes" / f"n{n}.txt").write_text(english_page(n, lines=2))
        sources.append(TextSource(path=str(tmp_path / "notes")))
    return sources


@pytest.mark.parametrize("storage", ["memory", "arrow"])
def test_chat_loss_counts_assistant_tokens_and_evaluation_keeps_the_mask(tmp_path, tiny_tokenizer, storage):
    import copy

    from memfit.data import IGNORE_INDEX, build_bundle

    tokenizer = copy.deepcopy(tiny_tokenizer)
    tokenizer.chat_template = CHATML
    options = {"cache_dir": str(tmp_path / "cache")} if storage == "arrow" else {}
    bundle, _ = build_bundle(_chat_sources(tmp_path), tokenizer, storage=storage, block_size=64, **options)
    assert bundle.loss_tokens == "assistant" and "assistant's tokens only" in bundle.format_stats()
    for row in bundle.test:  # the mask training used: fewer scored tokens than input tokens, all of them answers
        scored = [t for t in row["labels"] if t != IGNORE_INDEX]
        assert 0 < len(scored) < len(row["input_ids"])
        assert "It is" in tokenizer.decode(scored)
    every, _ = build_bundle(_chat_sources(tmp_path), tokenizer, storage=storage, block_size=64,
                            train_on_inputs=True, **options)
    assert every.loss_tokens == "all"
    assert all(row["labels"] == row["input_ids"] for row in every.test)
    assert every.stats["train"].target_tokens > bundle.stats["train"].target_tokens
    (tmp_path / "mixed").mkdir()
    mixed, _ = build_bundle(_chat_sources(tmp_path / "mixed", with_text=True), tokenizer, storage=storage,
                            block_size=64, **options)
    assert mixed.loss_tokens == "mixed"
