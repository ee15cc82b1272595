"""Record rows -> token rows through `Dataset.map(batched=True, num_proc=N)`: datasets shows the progress bar, writes
the result to an Arrow cache file and memory-maps it back, so tokenising never holds the corpus in memory.

The token rows are aligned with the record rows (row i tokenises record i; issue rows get no tokens) and hold only
the new columns (the text is not copied again). The cache file is named by the records' content hash, the
tokenizer's own definition and `TOKENS_VERSION`, so a rerun (with any `num_proc`) loads it instead of tokenising.
The block size is *not* part of the key: "too long" is decided afterwards from `n_tokens`, so a new `seq_len`
re-packs without re-tokenising.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Optional

from datasets import Dataset, Features, List, Value

from memfit.data.arrow.cache_files import cached_map
from memfit.data.chat import check_chat_tokenizer, tokenize_chat
from memfit.data.errors import DataError

TOKENS_VERSION = "1"  # bump when tokenize / tokenize_chat change what they produce
TOKEN_FEATURES = Features({"input_ids": List(Value("int32")), "labels": List(Value("int32")),
                           "n_tokens": Value("int64"), "chat_error": Value("string")})


def as_tokenizer(tokenizer: Any) -> Any:
    """The tokenizer object given, or `AutoTokenizer` loaded from a path / Hub id (a model's own tokenizer, chat
    template and padding rules: memfit.models.load_tokenizer)."""
    if isinstance(tokenizer, str):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(tokenizer)
    return tokenizer


def tokenize(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    """No special tokens (EOS is added by packing); verbose=False silences the longer-than-model-max warning,
    which does not apply because nothing is fed to the model unpacked."""
    if not texts:
        return []
    return [list(ids) for ids in tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]]


def tokenizer_key(tokenizer: Any) -> str:
    """What decides the tokens: the tokenizer's full definition (vocabulary, merges, normalisation), its chat
    template and special tokens. A fast tokenizer's JSON is exact; the truncation/padding state is left out because
    calling the tokenizer may set it without changing any token."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        spec = json.loads(backend.to_str())
        spec.pop("truncation", None)
        spec.pop("padding", None)
        body = json.dumps(spec, sort_keys=True)
    else:
        from datasets.fingerprint import Hasher

        body = Hasher.hash(tokenizer)
    extra = [type(tokenizer).__name__, str(getattr(tokenizer, "chat_template", None)), str(tokenizer.eos_token),
             str(tokenizer.pad_token)]
    return hashlib.sha256("\0".join([body, *extra]).encode()).hexdigest()


def _tokenise_batch(batch: dict[str, list], tokenizer: Any) -> dict[str, list]:
    n = len(batch["text"])
    ids: list[list[int]] = [[] for _ in range(n)]
    labels: list[list[int]] = [[] for _ in range(n)]  # plain text: empty, packing derives its labels
    errors: list[str | None] = [None] * n
    plain = [i for i in range(n) if batch["name"][i] is not None and not batch["chat"][i]]
    for i, tokens in zip(plain, tokenize(tokenizer, [batch["text"][i] for i in plain])):
        ids[i] = tokens
    for i in (i for i in range(n) if batch["name"][i] is not None and batch["chat"][i]):
        try:
            ids[i], labels[i] = tokenize_chat(tokenizer, json.loads(batch["text"][i]))
        except DataError as exc:  # this sample is bad (unknown role, no assistant turn): named, skipped
            errors[i] = str(exc)
    return {"input_ids": ids, "labels": labels, "n_tokens": [len(x) for x in ids], "chat_error": errors}


def tokenise_records(records: Dataset, tokenizer: Any, records_hash: str, cache_dir: Optional[Path],
                     num_proc: int = 1, batch_size: int = 256) -> tuple[Dataset, str]:
    """(token rows, their cache key): memory-mapped from a verified cache file, or in memory (`cache_dir` None)."""
    import pyarrow.compute as pc

    if pc.any(records.data.column("chat")).as_py():
        check_chat_tokenizer(tokenizer)  # the tokenizer, not a sample, is wrong: stop before any work
    key = hashlib.sha256(f"{TOKENS_VERSION}\0{records_hash}\0{tokenizer_key(tokenizer)}".encode()).hexdigest()[:40]
    tokens = cached_map(records, _tokenise_batch, cache_dir, f"tokens-{key}", "tokenising", batch_size=batch_size,
                        num_proc=num_proc if num_proc > 1 else None, fn_kwargs={"tokenizer": tokenizer},
                        remove_columns=records.column_names, features=TOKEN_FEATURES)
    return tokens, key
