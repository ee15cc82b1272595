"""Shared fixtures: tiny random Llama models built in-process, fp32 on CPU."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CORPUS = SHARED / "corpus" / "climate"

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(min(2, torch.get_num_threads()))


def tiny_config(**overrides):
    from transformers import LlamaConfig

    base = dict(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=False,
                attn_implementation="sdpa")
    return LlamaConfig(**{**base, **overrides})


def tiny_model(seed: int = 0, **overrides):
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    return LlamaForCausalLM(tiny_config(**overrides)).float()


@pytest.fixture
def tiny_llama():
    return tiny_model()


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Caches of one test never leak into another (the embedded model cache is shared: it is read-only)."""
    monkeypatch.setenv("MEMFIT_CACHE_RUNS", str(tmp_path_factory.mktemp("cache")))


def random_blocks(n: int, seq: int, vocab: int = 128, seed: int = 0, pattern: bool = False):
    """Packed-block rows as the data pipeline yields them."""
    g = torch.Generator().manual_seed(seed)
    if pattern:  # a repetitive corpus a tiny model can learn quickly
        base = torch.arange(seq) % 7 + 3
        ids = base.repeat(n, 1)
    else:
        ids = torch.randint(3, vocab, (n, seq), generator=g)
    return [{"input_ids": r.tolist(), "labels": r.tolist(), "position_ids": list(range(seq))} for r in ids]
