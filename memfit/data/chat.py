"""Chat and prompt/completion samples -> token ids whose labels supervise only what the assistant says.

The tokenizer's own chat template renders the turns. To know which tokens belong to the assistant, the conversation
is rendered prefix by prefix: the text an assistant turn adds after the generation prompt (`<|im_start|>assistant\\n`
for SmolLM2) is its reply, up to and including the end-of-turn token; everything else (system, user, the role
header, the newline after the end-of-turn token) gets label -100. Each piece is tokenised separately, so the mask is
exact at the piece boundaries (templates put special tokens there, so this matches tokenising the whole string).

Samples are packed whole: a block holds as many complete samples as fit, position ids restart at every sample (the
block-causal mask keeps samples apart), and the loop's loss is normalised by the supervised tokens only
(`memfit/core/loss.py` counts labels != -100).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from memfit.data.errors import DataError
from memfit.data.packing import IGNORE_INDEX

ROLES = frozenset({"system", "user", "assistant", "tool"})


def check_chat_tokenizer(tokenizer: Any) -> None:
    if not getattr(tokenizer, "chat_template", None):
        raise DataError(f"the tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has no chat template, which chat "
                        "and prompt/completion data need; use an instruct model's tokenizer or set "
                        "tokenizer.chat_template, or give the data as format 'text'")


def check_roles(messages: Sequence[dict[str, str]]) -> None:
    unknown = sorted({m["role"] for m in messages} - ROLES)
    if unknown:
        raise DataError(f"unknown chat role {unknown[0]!r}; roles must be one of {sorted(ROLES)}")
    if not any(m["role"] == "assistant" for m in messages):
        raise DataError("no assistant turn, so nothing would be trained on; add the assistant's reply")


def _render(tokenizer: Any, messages: Sequence[dict[str, str]], generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=generation_prompt)


def _pieces(tokenizer: Any, messages: Sequence[dict[str, str]]) -> list[tuple[str, bool]]:
    """(text, supervised) pieces whose concatenation is the rendered conversation."""
    pieces: list[tuple[str, bool]] = []
    rendered = ""
    end = tokenizer.eos_token or ""
    for i, message in enumerate(messages):
        if message["role"] == "assistant":
            prompt = _render(tokenizer, messages[:i], generation_prompt=True) if i else ""
            full = _render(tokenizer, messages[:i + 1])
            if not (prompt.startswith(rendered) and full.startswith(prompt)):
                raise DataError("the chat template does not render conversations prefix by prefix, so assistant "
                                "tokens cannot be located; use format 'prompt_completion' or another template")
            reply = full[len(prompt):]
            cut = reply.rfind(end) + len(end) if end and end in reply else len(reply)
            pieces += [(prompt[len(rendered):], False), (reply[:cut], True), (reply[cut:], False)]
        else:
            full = _render(tokenizer, messages[:i + 1])
            if not full.startswith(rendered):
                raise DataError("the chat template does not render conversations prefix by prefix")
            pieces.append((full[len(rendered):], False))
        rendered = full
    return [(text, supervised) for text, supervised in pieces if text]


def tokenize_chat(tokenizer: Any, messages: Sequence[dict[str, str]]) -> tuple[list[int], list[int]]:
    """(input_ids, labels) of one conversation; labels are -100 except the assistant's reply tokens."""
    check_chat_tokenizer(tokenizer)
    check_roles(messages)
    ids: list[int] = []
    labels: list[int] = []
    for text, supervised in _pieces(tokenizer, messages):
        piece = list(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])
        ids += piece
        labels += piece if supervised else [IGNORE_INDEX] * len(piece)
    return ids, labels


def pack_samples(samples: Sequence[tuple[Sequence[int], Sequence[int]]], block_size: int,
                 pad_token_id: int) -> dict[str, list[list[int]]]:
    """Whole samples into blocks of `block_size` (a sample never straddles two blocks), padding at each block's
    end with label -100; position ids restart at every sample and at the padding. A sample longer than
    `block_size` is a caller error (they are filtered, and reported, before packing)."""
    columns: dict[str, list[list[int]]] = {"input_ids": [], "labels": [], "position_ids": []}
    block: dict[str, list[int]] = {name: [] for name in columns}

    def close() -> None:
        padding = block_size - len(block["input_ids"])
        block["input_ids"] += [pad_token_id] * padding
        block["labels"] += [IGNORE_INDEX] * padding
        block["position_ids"] += list(range(padding))
        for name in columns:
            columns[name].append(block[name])
            block[name] = []

    for ids, labels in samples:
        if len(ids) > block_size:
            raise ValueError(f"a sample of {len(ids)} tokens does not fit a block of {block_size}")
        if len(block["input_ids"]) + len(ids) > block_size:
            close()
        block["input_ids"] += list(ids)
        block["labels"] += list(labels)
        block["position_ids"] += list(range(len(ids)))
    if block["input_ids"]:
        close()
    return columns
