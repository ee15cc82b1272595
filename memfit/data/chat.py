"""Chat and prompt/completion samples -> token ids whose labels supervise only what the assistant says.

The tokenizer's own chat template renders the turns. To know which tokens belong to the assistant, the conversation
is rendered prefix by prefix: the text an assistant turn adds after the generation prompt (`<|im_start|>assistant\\n`
for SmolLM2) is its reply, up to and including the end-of-turn token; everything else (system, user, the role
header, the newline after the end-of-turn token) gets label -100. Each piece is tokenised separately, so the mask is
exact at the piece boundaries (templates put special tokens there, so this matches tokenising the whole string).

Samples are packed whole by memfit/data/packing.py, and the loop's loss is normalised by the supervised tokens only
(`memfit/core/loss.py` counts labels != -100).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from memfit.data.errors import DataError
from memfit.core.loss import IGNORE_INDEX

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
