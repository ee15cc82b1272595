"""Where training text comes from: pydantic `Source` models (one per kind of input, each key described so that
`--help` can show it) and the `Record` a source's reader (readers.py) turns each document into, carrying its
provenance (source, file, line/row), so every bad input can be named precisely.

    sources = [PdfSource(path="papers/"), TextSource(path="notes/"), TableSource(path="qa.jsonl", format="chat")]
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from memfit.data.errors import DataError

Format = Literal["text", "chat", "prompt_completion"]
FormatChoice = Literal["auto", "text", "chat", "prompt_completion"]
TEXT_SUFFIXES = (".txt", ".md")
TABLE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
# a corpus folder's licence/attribution files (the bundled sample's NOTICE), by name without suffix: a PDF folder lists
# them as not read, never reads them as text (read_other_files) and never advises converting them to train on
NOTICE_NAMES = frozenset({"notice", "license", "licence", "copying", "authors"})


def is_notice(path: Path) -> bool:
    return path.stem.lower() in NOTICE_NAMES
OnError = Literal["skip", "raise"]


class _SourceBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    weight: float = Field(1.0, gt=0, description="training weight: how many times each train document is seen "
                                                  "(fractions sample a deterministic subset)")
    on_error: OnError = Field("skip", description="bad rows/files: 'skip' (reported) or 'raise' (stop the run)")
    name: Optional[str] = Field(None, description="label used in statistics and provenance; default: the path")

    @model_validator(mode="after")
    def _kind_always_set(self):
        # `kind` is the discriminator of Source: a dump of only the set fields (a config re-validated or updated)
        # must keep it, or the source could not be read back
        self.model_fields_set.add("kind")
        return self

    @property
    def label(self) -> str:
        return self.name or str(getattr(self, "path", None) or getattr(self, "id", ""))


class PdfSource(_SourceBase):
    kind: Literal["pdf"] = Field("pdf", description="a folder of PDF files")
    path: str = Field(description="folder of PDF files (extracted, cleaned as PDF text)")
    read_other_files: bool = Field(False, description="also read the folder's .txt/.md files as text and its "
                                                      ".jsonl/.json/.csv/.parquet files as tables; off: each such "
                                                      "file is named as not read, with how to include it")
    keep_non_english: bool = Field(False, description="train on documents the language check flags as not English")


class TextSource(_SourceBase):
    kind: Literal["text"] = Field("text", description="plain-text / Markdown files")
    path: str = Field(description="a .txt/.md file or a folder searched recursively for them")
    suffixes: list[str] = Field(list(TEXT_SUFFIXES), description="file endings read from a folder")
    clean: bool = Field(False, description="apply the PDF cleaning rules to this text too")


class _Columns(_SourceBase):
    format: FormatChoice = Field("auto", description="'chat' (a messages column of role/content turns), "
                                                     "'prompt_completion' (prompt + completion columns), 'text' (one "
                                                     "document per row), or 'auto': chat when the first row has the "
                                                     "messages column, prompt_completion when it has both prompt "
                                                     "columns, else text")
    text_column: str = Field("text", description="column holding the document text (format 'text')")
    messages_column: str = Field("messages", description="column holding the chat turns (format 'chat')")
    prompt_column: str = Field("prompt", description="prompt column (format 'prompt_completion')")
    completion_column: str = Field("completion", description="completion column (format 'prompt_completion')")

    def columns(self, data_format: Format) -> list[str]:
        return {"text": [self.text_column], "chat": [self.messages_column],
                "prompt_completion": [self.prompt_column, self.completion_column]}[data_format]

    def detect_format(self, row: dict[str, Any]) -> Format:
        """The format a row has: this source's `format`, or for 'auto' the columns the row holds."""
        if self.format != "auto":
            return self.format
        if self.messages_column in row:
            return "chat"
        return "prompt_completion" if {self.prompt_column, self.completion_column} <= set(row) else "text"


class TableSource(_Columns):
    kind: Literal["table"] = Field("table", description="one JSONL/JSON/CSV/Parquet file of rows")
    path: str = Field(description="a .jsonl/.json, .csv or .parquet file")


class SavedSource(_Columns):
    kind: Literal["saved"] = Field("saved", description="a dataset folder written by save_to_disk")
    path: str = Field(description="a folder written by datasets' save_to_disk")
    split: str = Field("train", description="split to read when the folder holds a DatasetDict")


class HubSource(_Columns):
    kind: Literal["hub"] = Field("hub", description="a Hugging Face Hub dataset, streamed")
    id: str = Field(description="a Hugging Face Hub dataset id")
    split: str = Field("train", description="split to read")
    revision: Optional[str] = Field(None, description="commit sha, tag or branch to read (default: the main branch); "
                                                      "the Arrow path reuses the rows only for a known commit")


Source = Annotated[Union[PdfSource, TextSource, TableSource, SavedSource, HubSource], Field(discriminator="kind")]


SOURCE_KINDS = (PdfSource, TextSource, TableSource, SavedSource, HubSource)


def source_keys_help() -> str:
    """Every source kind with its keys, defaults and descriptions: what `--help` shows for `sources`."""
    lines = ["sources: a list of {kind: ..., key: value} entries; keys per kind:"]
    for model in SOURCE_KINDS:
        fields = model.model_fields
        lines.append(f"  kind: {fields['kind'].default} - {fields['kind'].description}")
        for key, info in fields.items():
            if key == "kind":
                continue
            default = "required" if info.is_required() else "optional" if info.default is None \
                else f"default {info.default!r}"
            lines.append(f"    {key} ({default}): {info.description}")
    return "\n".join(lines)


@dataclass(frozen=True)
class Record:
    """One document (or chat sample) with its provenance. `text` for plain text, `messages` for chat/prompt data."""

    source: str
    file: str
    line: Optional[int]  # 1-based line (JSONL) or row (other tables); None for whole files
    format: Format
    text: str = ""
    messages: Optional[tuple[dict[str, str], ...]] = None
    clean_as_pdf: bool = False
    n_pages: int = 1  # PDF pages; one for every other record
    given_name: Optional[str] = None  # documents handed over directly (no source) keep their own name

    @property
    def name(self) -> str:
        if self.given_name is not None:
            return self.given_name
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{self.source}::{where}"

    def content(self) -> str:
        """The text the split hash and byte counts use: the document, or the turns as JSON."""
        return self.text if self.messages is None else json.dumps(list(self.messages), ensure_ascii=False)


def check_output_outside_sources(output_dir: Any, sources: list[Any]) -> None:
    """Refuse an output folder inside (or equal to) a source's folder: the run's summaries and exports would be read
    as training documents by the next run. Raises `DataError` naming both folders."""
    output = Path(output_dir).expanduser().resolve()
    for src in sources:
        path = getattr(src, "path", None)
        if not path:
            continue  # a Hub source has no folder to write into
        root = Path(path).expanduser().resolve()
        if output == root or root in output.parents:
            raise DataError(f"the output folder {output} lies inside the data source {root}; its files would become "
                            "training documents of the next run: choose an output folder outside the data")
