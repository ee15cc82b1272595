"""Tiny random Llama models and packed-block rows for tests (imported as `_models`: a module named `conftest`
would be shadowed by tests/data/conftest.py when the whole suite runs)."""

from __future__ import annotations

from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


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


def random_blocks(n: int, seq: int, vocab: int = 128, seed: int = 0, pattern: bool = False):
    """Packed-block rows as the data pipeline yields them."""
    g = torch.Generator().manual_seed(seed)
    if pattern:  # a repetitive corpus a tiny model can learn quickly
        base = torch.arange(seq) % 7 + 3
        ids = base.repeat(n, 1)
    else:
        ids = torch.randint(3, vocab, (n, seq), generator=g)
    return [{"input_ids": r.tolist(), "labels": r.tolist(), "position_ids": list(range(seq))} for r in ids]


def saved_activation_bytes(model, run):
    """(bytes, run's result): distinct non-parameter storages autograd saves for backward while `run()` executes,
    each counted once whatever views of it are saved."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = run()
    return sum(seen.values()), out
