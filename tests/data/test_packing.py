"""Packed blocks: layout, labels at document boundaries, and that packing does not leak across documents."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from memfit.core.loss import causal_lm_nll
from memfit.data import IGNORE_INDEX, pack_documents, pack_samples

EOS, PAD = 2, 0


def test_layout_of_a_packed_block():
    packed = pack_documents([[5, 6, 7], [10, 11, 12, 13]], block_size=12, eos_token_id=EOS, pad_token_id=PAD)
    assert packed == {
        "input_ids": [[5, 6, 7, EOS, 10, 11, 12, 13, EOS, PAD, PAD, PAD]],
        # first token of each document and the padding are never targets; each document's EOS is
        "labels": [[-100, 6, 7, EOS, -100, 11, 12, 13, EOS, -100, -100, -100]],
        "position_ids": [[0, 1, 2, 3, 0, 1, 2, 3, 4, 0, 1, 2]],
    }


def test_documents_flow_across_blocks_and_positions_restart_per_block():
    docs = [list(range(10, 17)), list(range(20, 23))]
    packed = pack_documents(docs, block_size=4, eos_token_id=EOS, pad_token_id=PAD)
    assert all(len(block) == 4 for column in packed.values() for block in column)
    assert sum(packed["input_ids"], []) == [*docs[0], EOS, *docs[1], EOS]  # exactly 3 blocks, no padding
    assert packed["position_ids"] == [[0, 1, 2, 3], [0, 1, 2, 3], [0, 1, 2, 3]]
    assert packed["labels"][1] == [14, 15, 16, EOS]  # a continuation block: real targets from its 2nd token on
    assert packed["labels"][2] == [IGNORE_INDEX, 21, 22, EOS]


def _summed_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The HF convention: position t predicts labels[t + 1]; -100 is ignored."""
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=IGNORE_INDEX,
                           reduction="sum")


@torch.no_grad()
def test_packed_documents_do_not_see_each_other(tiny_llama):
    """transformers 5 turns restarting position_ids into a block-causal mask when attention_mask is None *and no
    KV cache exists* - training forwards must pass use_cache=False (the default creates a cache and disables it)."""
    model = tiny_llama.eval()
    vocab = model.config.vocab_size
    generator = torch.Generator().manual_seed(0)
    doc_a, doc_b = (torch.randint(3, vocab, (n,), generator=generator).tolist() for n in (9, 13))
    packed = {k: torch.tensor(v) for k, v in pack_documents([doc_a, doc_b], 32, EOS, PAD).items()}

    logits = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"], use_cache=False).logits
    alone_a = model(input_ids=torch.tensor([doc_a + [EOS]]), use_cache=False).logits
    alone_b = model(input_ids=torch.tensor([doc_b + [EOS]]), use_cache=False).logits
    b_start = len(doc_a) + 1
    torch.testing.assert_close(logits[:, :b_start], alone_a, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(logits[:, b_start:b_start + len(doc_b) + 1], alone_b, rtol=1e-4, atol=1e-5)

    # and the loss over the packed block is the two documents' losses, nothing predicted across the boundary
    alone_labels = [torch.tensor([[IGNORE_INDEX, *d[1:], EOS]]) for d in (doc_a, doc_b)]
    expected = _summed_nll(alone_a, alone_labels[0]) + _summed_nll(alone_b, alone_labels[1])
    torch.testing.assert_close(_summed_nll(logits, packed["labels"]), expected, rtol=1e-4, atol=1e-4)

    # control: the same block with plain 0..n-1 positions (no restart) does leak into document B
    leaky = model(input_ids=packed["input_ids"], position_ids=torch.arange(32)[None], use_cache=False).logits
    assert not torch.allclose(leaky[:, b_start:b_start + len(doc_b) + 1], alone_b, atol=1e-3)


def test_unpacked_blocks_hold_one_document_each_padded_and_masked():
    blocks = pack_documents([[5, 6, 7], [10, 11, 12, 13, 14, 15]], block_size=4, eos_token_id=EOS,
                            pad_token_id=PAD, packing=False)
    assert blocks == {
        # document 1 + EOS in one block; document 2 + EOS (7 tokens) continues in a second block of its own
        "input_ids": [[5, 6, 7, EOS], [10, 11, 12, 13], [14, 15, EOS, PAD]],
        "labels": [[-100, 6, 7, EOS], [-100, 11, 12, 13], [-100, 15, EOS, -100]],
        "position_ids": [[0, 1, 2, 3]] * 3,
        "attention_mask": [[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 0]],
    }
    # a document filling its last block exactly: no block of a lone EOS (at a block's start it is no target)
    exact = pack_documents([[5, 6, 7, 8]], block_size=4, eos_token_id=EOS, pad_token_id=PAD, packing=False)
    assert exact["input_ids"] == [[5, 6, 7, 8]] and exact["labels"] == [[-100, 6, 7, 8]]


def test_unpacked_chat_samples_one_per_block():
    samples = [([5, 6, 7], [-100, -100, 7]), ([8, 9], [-100, 9])]
    blocks = pack_samples(samples, block_size=6, pad_token_id=PAD, packing=False)
    assert blocks["input_ids"] == [[5, 6, 7, PAD, PAD, PAD], [8, 9, PAD, PAD, PAD, PAD]]
    assert blocks["labels"] == [[-100, -100, 7, -100, -100, -100], [-100, 9, -100, -100, -100, -100]]
    assert blocks["attention_mask"] == [[1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0]]
    assert len(pack_samples(samples, block_size=6, pad_token_id=PAD)["input_ids"]) == 1  # packed: both share one


@torch.no_grad()
def test_a_padded_batch_gives_the_loss_of_the_unpadded_sequences(tiny_llama):
    """The training loss (core/loss.py, what the step calls) over padded, masked blocks equals the summed NLL of
    each document run alone without padding: padding is neither attended to nor scored."""
    model = tiny_llama.eval()
    generator = torch.Generator().manual_seed(1)
    docs = [torch.randint(3, model.config.vocab_size, (n,), generator=generator).tolist() for n in (5, 11)]
    blocks = {k: torch.tensor(v) for k, v in pack_documents(docs, 16, EOS, PAD, packing=False).items()}
    assert (blocks["attention_mask"] == 0).sum() == 2 * 16 - sum(len(d) + 1 for d in docs)
    nll, count = causal_lm_nll(model, blocks)
    expected, expected_count = 0.0, 0
    for doc in docs:
        ids = torch.tensor([[*doc, EOS]])
        alone, n = causal_lm_nll(model, {"input_ids": ids, "labels": ids.masked_fill(torch.arange(ids.shape[1]) == 0,
                                                                                       IGNORE_INDEX)})
        expected, expected_count = expected + alone, expected_count + int(n)
    assert int(count) == expected_count == sum(len(d) for d in docs)  # each document's tokens after the first + EOS
    torch.testing.assert_close(nll, expected, rtol=1e-4, atol=1e-4)
