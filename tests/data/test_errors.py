"""The data pipeline's two kinds of failure: a `DataError` stops the build (a ValueError, so the command line shows
its one line), a `FileIssue` names one skipped file and its fix while the other files go on."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from memfit.data.errors import DataError, FileIssue


def test_a_data_error_is_a_user_error():
    assert issubclass(DataError, ValueError)  # memfit.cli.errors prints ValueErrors as one line, exit code 2


def test_a_file_issue_reads_as_file_then_reason_and_stays_as_recorded():
    issue = FileIssue(Path("papers/scan.pdf"), "no_text", "no extractable text: run OCR first")
    assert str(issue) == "papers/scan.pdf: no extractable text: run OCR first"
    assert issue == FileIssue(Path("papers/scan.pdf"), "no_text", "no extractable text: run OCR first")
    with pytest.raises(dataclasses.FrozenInstanceError):
        issue.kind = "other"  # type: ignore[misc]
