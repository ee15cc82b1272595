"""Perplexity / bits per byte: against a plain float64 reference, batching- and padding-invariant, multi-process."""

import copy
import json
import math

import pytest

from _multiproc import launch_two_cpu_processes
import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

from memfit.evaluation import collate_windows, document_windows, perplexity
from memfit.core.loss import causal_lm_nll

VOCAB = 97
DOC_LENGTHS = (1, 2, 5, 17, 40, 63)  # includes a 1-token document (nothing to score) and several windows' worth


def tiny_llama(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         attn_implementation="sdpa")
    return LlamaForCausalLM(config).float()


def random_docs(lengths=DOC_LENGTHS, seed: int = 1) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(1, VOCAB, (n,), generator=g).tolist() for n in lengths]


@pytest.fixture(scope="module")
def model():
    return tiny_llama()


@pytest.fixture(scope="module")
def model64(model):
    return copy.deepcopy(model).double().eval()


def reference_nll(model64, docs, context_length, stride):
    """The HF-guide loop written out per document and window in float64: token 0 has no context and is never
    scored; each later window scores the next `stride` tokens after context_length - stride tokens of context."""
    nll, tokens = 0.0, 0
    with torch.no_grad():
        for ids in docs:
            scored_until = 1
            while scored_until < len(ids):
                if scored_until == 1:
                    start, end = 0, min(len(ids), context_length)
                else:
                    start, end = max(0, scored_until + stride - context_length), min(len(ids), scored_until + stride)
                logits = model64(input_ids=torch.tensor([ids[start:end]])).logits[0]
                logp = torch.log_softmax(logits, dim=-1)
                for t in range(scored_until, end):
                    nll -= logp[t - start - 1, ids[t]].item()
                tokens += end - scored_until
                scored_until = end
    return nll, tokens


@pytest.mark.parametrize("context_length,stride", [(16, 5), (16, 15), (8, 1), (128, None)])
def test_matches_float64_reference(model, model64, context_length, stride):
    docs = random_docs()
    result = perplexity(model, docs, context_length=context_length, stride=stride, batch_size=3)
    ref_nll, ref_tokens = reference_nll(model64, docs, context_length, result.stride)
    assert result.tokens == ref_tokens == sum(len(d) - 1 for d in docs)
    assert result.nll_sum == pytest.approx(ref_nll, rel=1e-6)
    assert result.perplexity == pytest.approx(math.exp(ref_nll / ref_tokens), rel=1e-6)
    assert result.documents == sum(len(d) >= 2 for d in docs)
    assert result.bytes is None and result.bits_per_byte is None  # token lists carry no byte counts


def test_invariant_to_batch_size_and_padding_side(model):
    docs = random_docs()
    results = [perplexity(model, docs, context_length=16, stride=5, batch_size=bs, padding_side=side, loss_fn=loss)
               for bs in (1, 3, 8) for side in ("left", "right") for loss in (None, causal_lm_nll)]
    for r in results[1:]:
        assert r.tokens == results[0].tokens
        assert r.nll_sum == pytest.approx(results[0].nll_sum, rel=1e-6)


def test_left_padding_uses_explicit_positions():
    docs = [[1, 2, 3, 4, 5], [6, 7, 8]]
    windows = [document_windows(len(d), 8, 7, doc=i)[0] for i, d in enumerate(docs)]
    batch = collate_windows(windows, docs, padding_side="left")
    assert batch["attention_mask"][1].tolist() == [0, 0, 1, 1, 1]
    assert batch["position_ids"][1, 2:].tolist() == [0, 1, 2]  # real tokens start at position 0
    assert batch["labels"][1].tolist() == [-100, -100, -100, 7, 8]  # a document's first token is never scored


def test_padding_never_counts(model):
    """Every label the loss sees on a padded position is ignored, and the scored count is the real one."""
    seen = []

    def spy(model_, batch):
        assert not model_.training and not torch.is_grad_enabled()
        assert (batch["labels"][batch["attention_mask"] == 0] == -100).all()
        seen.append(int((batch["labels"][:, 1:] != -100).sum()))
        logits = model_(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                        position_ids=batch["position_ids"]).logits
        target = batch["labels"][:, 1:]
        nll = F.cross_entropy(logits[:, :-1].flatten(0, 1), target.flatten(), reduction="sum")
        return nll, (target != -100).sum()

    docs = random_docs()
    model.train()
    result = perplexity(model, docs, context_length=16, stride=5, batch_size=4, loss_fn=spy, padding_side="left")
    assert model.training  # training mode restored
    model.eval()
    assert sum(seen) == result.tokens == sum(len(d) - 1 for d in docs)
    default = perplexity(model, docs, context_length=16, stride=5, batch_size=4)
    assert result.nll_sum == pytest.approx(default.nll_sum, rel=1e-6)


@pytest.mark.parametrize("n_tokens", [2, 3, 16, 17, 50, 101])
@pytest.mark.parametrize("context_length,stride", [(16, 1), (16, 7), (16, 15), (16, 16), (2, 1)])
def test_windows_score_every_token_but_the_first_once(n_tokens, context_length, stride):
    windows = document_windows(n_tokens, context_length, min(stride, context_length - 1))
    scored = [t for w in windows for t in range(w.first_scored, w.end)]
    assert scored == list(range(1, n_tokens))  # each once, in order
    for w in windows:
        assert w.end - w.start <= context_length and w.start < w.first_scored


def test_stride_equal_to_context_gives_disjoint_windows(model, model64):
    """Disjoint chunks of context_length - 1 scored tokens, each conditioned only on its own chunk plus the one
    boundary token needed to predict its first token."""
    docs, ctx = random_docs(), 16
    result = perplexity(model, docs, context_length=ctx, stride=ctx)
    assert result.stride == ctx - 1
    nll = 0.0
    with torch.no_grad():
        for ids in docs:
            for first in range(1, len(ids), ctx - 1):
                chunk = ids[first - 1:first + ctx - 1]
                logp = torch.log_softmax(model64(input_ids=torch.tensor([chunk])).logits[0], dim=-1)
                nll -= logp[:-1].gather(1, torch.tensor(chunk[1:])[:, None]).sum().item()
    assert result.nll_sum == pytest.approx(nll, rel=1e-6)
    assert result.tokens == sum(len(d) - 1 for d in docs)


def test_bits_per_byte_by_hand(model, model64):
    text = "naïve café, déjà vu"  # non-ASCII: bytes != characters
    ids = [ord(c) % VOCAB for c in text]
    n_bytes = len(text.encode("utf-8"))
    result = perplexity(model, [{"name": "t", "input_ids": ids, "n_bytes": n_bytes}], context_length=64)
    with torch.no_grad():
        logp = torch.log_softmax(model64(input_ids=torch.tensor([ids])).logits[0], dim=-1)
    nll = -logp[:-1].gather(1, torch.tensor(ids[1:])[:, None]).sum().item()
    assert result.bytes == n_bytes == 23
    assert result.bits_per_byte == pytest.approx(nll / math.log(2) / n_bytes, rel=1e-6)
    # Many windows over the same document still count its bytes once.
    assert perplexity(model, [{"input_ids": ids, "n_bytes": n_bytes}], context_length=4, stride=2).bytes == n_bytes


def test_dataset_input_and_short_documents(model):
    from datasets import Dataset

    docs = random_docs()
    rows = {"name": [f"d{i}" for i in range(len(docs))], "input_ids": docs, "n_bytes": [3 * len(d) for d in docs]}
    result = perplexity(model, Dataset.from_dict(rows), context_length=16, stride=5)
    long_only = [d for d in docs if len(d) >= 2]
    assert result.bytes == sum(3 * len(d) for d in long_only)  # the 1-token document scores and counts nothing
    with_short = perplexity(model, [[]] + long_only + [[7]], context_length=16, stride=5)
    assert with_short.documents == len(long_only) and with_short.tokens == result.tokens
    assert result.nll_sum == pytest.approx(with_short.nll_sum, rel=1e-6)
    assert set(result.to_dict()) >= {"perplexity", "nll_sum", "tokens", "bytes", "bits_per_byte", "stride"}
    with pytest.raises(ValueError, match="nothing to score"):
        perplexity(model, [[], [3]])


def _two_process_worker(model, docs, out_dir):
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    with_acc = perplexity(model, docs, context_length=16, stride=5, batch_size=2, accelerator=accelerator)
    with_dist = perplexity(model, docs, context_length=16, stride=5, batch_size=3)  # plain torch.distributed
    path = out_dir / f"rank{accelerator.process_index}.json"
    path.write_text(json.dumps([with_acc.to_dict(), with_dist.to_dict(), accelerator.num_processes]))


@pytest.mark.slow
def test_two_processes_equal_one(model, tmp_path):
    # 5 documents -> 1 + 1 + 4 + 12 + 17 = 35 windows: an uneven split over 2 ranks.
    docs = [{"input_ids": d, "n_bytes": len(d) + 1} for d in random_docs((3, 9, 30, 70, 95))]
    n_windows = sum(len(document_windows(len(d["input_ids"]), 16, 5)) for d in docs)
    assert n_windows % 2 == 1
    single = perplexity(model, docs, context_length=16, stride=5).to_dict()
    launch_two_cpu_processes(_two_process_worker, (model, docs, tmp_path), tmp_path / "rendezvous")
    for rank in (0, 1):
        with_acc, with_dist, world = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert world == 2
        for result in (with_acc, with_dist):
            assert result["tokens"] == single["tokens"] and result["bytes"] == single["bytes"]
            assert result["nll_sum"] == pytest.approx(single["nll_sum"], rel=1e-6)
            assert result["bits_per_byte"] == pytest.approx(single["bits_per_byte"], rel=1e-6)


def test_only_labels_scores_the_tokens_the_labels_keep(model, model64):
    """A chat run trained on the answers only: only_labels scores exactly those tokens (by hand in float64), with no
    bits per byte (the bytes include the unscored turns); without it every token counts as before."""
    docs = random_docs((17, 40))
    rows = [{"input_ids": ids, "n_bytes": 3 * len(ids),
             "labels": [-100 if i < len(ids) // 2 else t for i, t in enumerate(ids)]} for ids in docs]
    res = perplexity(model, rows, context_length=16, stride=5, batch_size=3, only_labels=True)
    nll, tokens = 0.0, 0
    with torch.no_grad():
        for ids in docs:  # each window re-derived as the module docstring describes, answers only
            for w in document_windows(len(ids), 16, 5):
                logp = torch.log_softmax(model64(input_ids=torch.tensor([ids[w.start:w.end]])).logits[0], dim=-1)
                for t in range(w.first_scored, w.end):
                    if t >= len(ids) // 2:
                        nll -= logp[t - w.start - 1, ids[t]].item()
                        tokens += 1
    assert res.tokens == tokens == sum(len(ids) - len(ids) // 2 for ids in docs)
    assert res.nll_sum == pytest.approx(nll, rel=1e-4) and res.bits_per_byte is None
    every = perplexity(model, rows, context_length=16, stride=5, batch_size=3)
    assert every.tokens == sum(len(ids) - 1 for ids in docs) and every.bits_per_byte is not None
    with pytest.raises(ValueError, match="leave no token to score"):
        perplexity(model, [{**rows[0], "labels": [-100] * len(docs[0])}], context_length=16, only_labels=True)
