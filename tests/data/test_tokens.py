"""Record rows -> token rows: aligned with the records, plain text without special tokens, chat samples with their
assistant-only labels or the reason they cannot be tokenised, cached under a key of content and tokenizer."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from memfit.core.loss import IGNORE_INDEX
from memfit.data.arrow.records import content_hash, memory_records
from memfit.data.arrow.tokens import as_tokenizer, tokenise_records, tokenize, tokenizer_key
from memfit.data.errors import FileIssue
from memfit.data.sources import Record

CHATML = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<eos>\n{% endfor %}"
          "{% if add_generation_prompt %}<|assistant|>{% endif %}")
GOOD = ({"role": "user", "content": "Why is the sea warming?"}, {"role": "assistant", "content": "Heat uptake."})
NO_ANSWER = ({"role": "user", "content": "Anyone?"},)


@pytest.fixture(scope="module")
def chat_tokenizer(tiny_tokenizer):
    tokenizer = copy.deepcopy(tiny_tokenizer)
    tokenizer.chat_template = CHATML
    return tokenizer


def _records():
    return memory_records([Record("notes", "a.txt", None, "text", text="The ocean is warming."),
                           FileIssue(Path("b.txt"), "empty", "the file holds no text"),
                           Record("qa", "qa.jsonl", 1, "chat", messages=GOOD),
                           Record("qa", "qa.jsonl", 2, "chat", messages=NO_ANSWER)])


def test_plain_text_gets_no_special_tokens(tiny_tokenizer, tmp_path):
    ids = tokenize(tiny_tokenizer, ["The ocean is warming.", ""])
    assert tiny_tokenizer.eos_token_id not in ids[0] and ids[1] == []  # packing adds the EOS between documents
    assert tiny_tokenizer.decode(ids[0]) == "The ocean is warming." and tokenize(tiny_tokenizer, []) == []
    assert as_tokenizer(tiny_tokenizer) is tiny_tokenizer
    tiny_tokenizer.save_pretrained(tmp_path / "tok")
    assert tokenize(as_tokenizer(str(tmp_path / "tok")), ["The ocean"]) == tokenize(tiny_tokenizer, ["The ocean"])


def test_the_key_changes_with_what_decides_the_tokens_only(tiny_tokenizer, chat_tokenizer):
    key = tokenizer_key(tiny_tokenizer)
    assert tokenizer_key(chat_tokenizer) != key  # the chat template decides chat tokens
    tiny_tokenizer(["a longer text"], truncation=True, max_length=2)  # may set truncation state: no token changes
    assert tokenizer_key(tiny_tokenizer) == key


def test_token_rows_align_with_the_records(chat_tokenizer):
    records = _records()
    tokens, _ = tokenise_records(records, chat_tokenizer, content_hash(records), None)
    assert len(tokens) == len(records) == 4
    text, issue, chat, bad = (tokens[i] for i in range(4))
    assert text["input_ids"] == tokenize(chat_tokenizer, ["The ocean is warming."])[0] and text["labels"] == []
    assert issue["input_ids"] == [] and issue["n_tokens"] == 0 and issue["chat_error"] is None
    answer = [t for t in chat["labels"] if t != IGNORE_INDEX]
    assert chat["n_tokens"] == len(chat["input_ids"]) and 0 < len(answer) < len(chat["input_ids"])
    assert "Heat uptake." in chat_tokenizer.decode(answer) and "sea" not in chat_tokenizer.decode(answer)
    assert bad["input_ids"] == [] and "assistant" in bad["chat_error"]


def test_a_rerun_loads_the_cached_tokens_whatever_the_workers(chat_tokenizer, tmp_path):
    records = _records()
    first, key = tokenise_records(records, chat_tokenizer, content_hash(records), tmp_path)
    again, again_key = tokenise_records(records, chat_tokenizer, content_hash(records), tmp_path, num_proc=2)
    assert again_key == key and again["input_ids"] == first["input_ids"]
    assert [f["filename"] for f in again.cache_files] == [f["filename"] for f in first.cache_files]
    assert json.loads(next(tmp_path.glob("*.sha256.json")).read_text())  # each cache file's checksum recorded
