"""The endless stream of loader batches: resumable by (epoch, consumed), and only blocks of the planned length."""

from __future__ import annotations

import pytest
import torch

from memfit.training.data_stream import DataStream


def _loader(lengths):
    return [{"input_ids": torch.zeros(2, n, dtype=torch.long)} for n in lengths]


def test_the_stream_crosses_epochs_and_resumes_where_it_stopped():
    loader = _loader([4, 4, 4])
    stream = DataStream(loader)
    assert len(stream.take(4)) == 4 and (stream.epoch, stream.consumed) == (1, 1)
    again = DataStream(loader, stream.epoch, stream.consumed)
    assert again.take(2)[0] is loader[1]


def test_a_block_of_another_length_than_planned_is_refused():
    stream = DataStream(_loader([4, 4, 6]), seq_len=4)
    stream.take(2)
    with pytest.raises(ValueError, match="training blocks have 6 tokens but the plan was made for 4"):
        stream.take(1)
    assert len(DataStream(_loader([6]), seq_len=None).take(1)) == 1  # no plan: nothing to check
