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


@pytest.mark.parametrize("storage", ["memory", "arrow"])
def test_unpacked_bundle_one_document_or_conversation_per_block_and_a_validation_split(tmp_path, tiny_tokenizer,
                                                                                      storage):
    """packing=False: every train block holds one sample (text and chat alike), padding masked and unlabelled; the
    same target tokens as packed; validation documents come from the non-test documents and stay whole."""
    import copy

    from memfit.data import IGNORE_INDEX, build_bundle

    tokenizer = copy.deepcopy(tiny_tokenizer)
    tokenizer.chat_template = CHATML
    options = {"cache_dir": str(tmp_path / "cache")} if storage == "arrow" else {}
    sources = _chat_sources(tmp_path, with_text=True)
    packed, _ = build_bundle(sources, tokenizer, storage=storage, block_size=64, **options)
    bundle, _ = build_bundle(sources, tokenizer, storage=storage, block_size=64, packing=False,
                             validation_fraction=0.2, **options)
    assert not bundle.packed and bundle.chat and "train blocks are not packed" in bundle.format_stats()
    assert set(bundle.plan.validation) and not set(bundle.plan.validation) & set(bundle.plan.test)
    assert len(bundle.validation) == len(bundle.plan.validation)
    pad = tokenizer.pad_token_id
    for block in bundle.train:
        mask = block["attention_mask"]
        real = sum(mask)
        assert mask == [1] * real + [0] * (64 - real)  # right padding only
        assert block["input_ids"][real:] == [pad] * (64 - real)
        assert set(block["labels"][real:]) <= {IGNORE_INDEX}
        assert block["position_ids"][:real] == list(range(real))  # one sequence: no restart (a second document)
    assert "attention_mask" not in packed.train.column_names
    unpacked, _ = build_bundle(sources, tokenizer, storage=storage, block_size=64, packing=False, **options)
    # at least a block per document, and never fewer blocks than packing the same documents
    assert len(unpacked.train) >= max(unpacked.stats["train"].documents, len(packed.train) + 1)
    assert unpacked.plan == packed.plan  # the split does not depend on the layout
    assert 0 < bundle.stats["train"].target_tokens < unpacked.stats["train"].target_tokens  # validation left out
