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


@pytest.fixture(scope="session")
def tiny_weights_dir(tmp_path_factory) -> str:
    """A saved tiny random model (no tokenizer): for code that loads a model by path, like bench and plan --auto."""
    path = tmp_path_factory.mktemp("tiny_weights")
    tiny_model().save_pretrained(path)
    return str(path)
