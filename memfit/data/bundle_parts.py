"""What the bundle builder (bundle.py) returns and the pieces it assembles: `DataBundle`, per-split statistics,
evaluation sets that keep their label mask, the samples refused after tokenising, and the storage choice."""
from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import pyarrow.compute as pc
from datasets import Dataset, concatenate_datasets

from memfit.core.loss import IGNORE_INDEX
from memfit.data.arrow.records import total_bytes
from memfit.data.errors import DataError, FileIssue
from memfit.data.split import SplitPlan
from memfit.quiet import datasets_bars_off

ARROW_THRESHOLD_MB = 256  # input files above this take the Arrow path when the user did not choose
# What the training loss counts: every token (text documents, or chat with train_on_inputs), only the assistant's
# tokens (chat / prompt-completion samples), or both kinds of rows ("mixed": assistant tokens of the chat samples,
# every token of the text documents).
LossTokens = Literal["all", "assistant", "mixed"]
LOSS_WORDS = {"all": "every token", "assistant": "the assistant's tokens only (train_on_inputs: false)",
              "mixed": "the assistant's tokens of chat samples and every token of text documents"}


@dataclass(frozen=True)
class SplitStats:
    documents: int
    pages: int
    characters: int
    tokens: int | None = None  # document tokens, without the EOS separators
    blocks: int | None = None  # train: packed blocks; eval splits: ceil(tokens / block_size) windows
    target_tokens: int | None = None  # train: labels != -100 that the shifted loss uses


@dataclass
class DataBundle:
    """What training and evaluation consume. `test`/`validation` rows are whole documents: name, input_ids
    (every token: the all-token evaluation), n_bytes and labels (the tokens training scored: the assistant's in
    chat samples unless train_on_inputs, else equal to input_ids)."""

    train: Dataset
    test: Dataset
    validation: Dataset | None
    documents: Dataset  # every usable document: name, text, n_pages, split, source
    plan: SplitPlan
    block_size: int
    eos_token_id: int
    stats: dict[str, SplitStats] = field(default_factory=dict)
    loss_tokens: LossTokens = "all"
    packed: bool = True  # False: one document or chat sample per train block, padded and masked
    chat: bool = False  # the train blocks hold chat / prompt-completion samples

    def format_stats(self) -> str:
        return format_split_stats(self.stats, self.block_size, self.loss_tokens, self.packed)


def format_split_stats(stats: Mapping[str, SplitStats], block_size: int | None = None,
                       loss_tokens: Optional[LossTokens] = None, packed: bool = True) -> str:
    def cell(value: int | None) -> str:
        return "-" if value is None else f"{value:,}"

    total_chars = sum(s.characters for s in stats.values()) or 1
    header = f"{'split':<11}{'docs':>6}{'pages':>8}{'chars':>12}{'chars %':>9}{'tokens':>11}{'blocks':>9}"
    lines = [header, "-" * len(header)]
    for name, s in stats.items():
        lines.append(f"{name:<11}{s.documents:>6}{s.pages:>8,}{s.characters:>12,}{s.characters / total_chars:>9.1%}"
                     f"{cell(s.tokens):>11}{cell(s.blocks):>9}")
    if block_size:
        layout = ("train blocks are not packed (one document or conversation per block, padding masked out of "
                  "attention and loss)" if not packed else
                  "chat samples are packed whole (padding at each block's end)" if loss_tokens == "assistant" else
                  "train blocks are packed (EOS between documents, padding only at the end)")
        lines.append(f"blocks of {block_size} tokens; {layout}, test/validation stay whole documents (blocks = "
                     "windows to cover them).")
    if loss_tokens:
        lines.append(f"the loss counts {LOSS_WORDS[loss_tokens]}.")
    return "\n".join(lines)


def column(data: Dataset, name: str) -> list:
    return data.data.column(name).to_pylist()


def _eval_labels(batch: dict[str, list], train_on_inputs: bool) -> dict[str, list]:
    return {"labels": [ids if train_on_inputs or not labels else labels
                       for ids, labels in zip(batch["input_ids"], batch["labels"])]}


def eval_set(records: Dataset, tokens: Dataset, rows: list[int], train_on_inputs: bool) -> Dataset:
    """Whole documents `rows`: name, input_ids, n_bytes and the labels training scores (text: all tokens)."""
    data = concatenate_datasets([records.select_columns(["name"]), tokens.select_columns(["input_ids"]),
                                 records.select_columns(["n_bytes"]), tokens.select_columns(["labels"])],
                                axis=1).select(rows)
    with datasets_bars_off():
        return data.map(_eval_labels, batched=True, keep_in_memory=True, fn_kwargs={"train_on_inputs": train_on_inputs})


def sample_issues(records: Dataset, tokens: Dataset, block_size: int, on_too_long: str) -> list[FileIssue]:
    """Chat samples the tokeniser refused, or too long for a block: named with file and line."""
    issues = []
    bad = pc.or_(pc.is_valid(tokens.data.column("chat_error")),
                 pc.and_(records.data.column("chat"), pc.greater(tokens.data.column("n_tokens"), block_size)))
    for i in pc.indices_nonzero(bad).to_pylist():
        row, token_row = records[i], tokens.select_columns(["n_tokens", "chat_error"])[i]
        where = f"line {row['line']}: " if row["line"] is not None else ""
        if token_row["chat_error"] is not None:
            issues.append(FileIssue(Path(row["file"]), "bad-chat", f"{where}{token_row['chat_error']}"))
            continue
        issue = FileIssue(Path(row["file"]), "too-long", f"{where}sample of {token_row['n_tokens']} tokens is longer "
                                                         f"than the sequence length {block_size}; raise seq_len or "
                                                         "shorten the sample")
        if on_too_long == "raise":
            raise DataError(str(issue))
        issues.append(issue)
    return issues


def target_tokens(train: Dataset, batch_size: int = 4096) -> int:
    """labels != -100 that the shifted loss uses (a block's first label never is), in Arrow batches."""
    count = 0
    for batch in train.select_columns(["labels"]).with_format("arrow").iter(batch_size=batch_size):
        labels = batch.column("labels")
        count += pc.sum(pc.not_equal(pc.list_flatten(labels), IGNORE_INDEX)).as_py() or 0
        count -= pc.sum(pc.not_equal(pc.list_element(labels, 0), IGNORE_INDEX)).as_py() or 0
    return count


def test_split_hashes(bundle: DataBundle) -> list[tuple[str, str]]:
    """(name, sha256 of the text) of every test document, sorted by name: what a run records so a later run can
    prove it evaluates on the same held-out documents."""
    # in memory: a filter written to disk lands beside the verified records cache as a file it never recorded, and
    # the next run would rebuild the records for it
    with datasets_bars_off():
        rows = bundle.documents.filter(lambda row: row["split"] == "test", keep_in_memory=True)
    return sorted((row["name"], hashlib.sha256(row["text"].encode("utf-8")).hexdigest()) for row in rows)


test_split_hashes.__test__ = False  # its name starts with "test": keep pytest from collecting it


def wants_arrow(sources: list[Any], threshold_mb: float = ARROW_THRESHOLD_MB) -> bool:
    """The automatic storage: Arrow for a Hub source (size unknown until read) or input files over `threshold_mb`."""
    if any(not getattr(src, "path", None) for src in sources):
        return True
    total = sum(total_bytes(src.path) for src in sources)
    return total > threshold_mb * 2**20


def default_num_proc(on_gpu: bool) -> int:
    """Tokenising workers: 1 on a CPU machine (the cores train), else up to 8 of the host's cores."""
    return min(8, os.cpu_count() or 1) if on_gpu else 1
