"""Shared fixtures: tiny random Llama models built in-process, fp32 on CPU."""

from __future__ import annotations

import os

import pytest
import torch

from _models import tiny_model

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def tiny_llama():
    return tiny_model()
