"""Every linear cross-entropy implementation against full logits, and how `cce` picks one."""

from __future__ import annotations

import pytest
import torch

from memfit import Stack
from memfit.ops import cross_entropy_kernels as kernels
from _models import random_blocks, tiny_model

PRESENT = kernels.present_implementations()


def _cut_stand_in(monkeypatch):
    """cut-cross-entropy imports Triton at load time, so it cannot run on a CPU machine: a stand-in that is
    'installed' (and computes the exact loss with memfit's op) tests the selection logic around it."""
    calls = []

    def fake(*args):
        calls.append(args)
        return kernels.memfit_linear_cross_entropy(*args)

    monkeypatch.setitem(kernels.IMPLEMENTATIONS, "cut", (lambda: True, fake))
    return calls


@pytest.mark.parametrize("impl", PRESENT)
@pytest.mark.parametrize("chunk", [7, 1000])
def test_loss_and_gradients_equal_full_logits(impl, chunk):
    torch.manual_seed(0)
    h = torch.randn(37, 16, requires_grad=True)
    w = torch.randn(50, 16, requires_grad=True)  # a trained lm_head: its gradient is checked too
    y = torch.randint(0, 50, (37,))
    y[[0, 5, 6]] = -100
    ref = torch.nn.functional.cross_entropy(h @ w.T, y, reduction="sum", ignore_index=-100)
    gh, gw = torch.autograd.grad(ref * 0.25, (h, w))
    out = kernels.implementation(impl)(h, w, y, chunk, torch.float32)
    (out * 0.25).backward()
    assert out.item() == pytest.approx(ref.item(), rel=1e-5)
    torch.testing.assert_close(h.grad, gh, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(w.grad, gw, rtol=1e-5, atol=1e-5)


def test_auto_prefers_torch_then_cut_then_memfit(monkeypatch):
    _cut_stand_in(monkeypatch)
    assert kernels.resolve_implementation("auto") == ("torch" if "torch" in PRESENT else "cut")
    monkeypatch.setitem(kernels.IMPLEMENTATIONS, "torch", (lambda: False, None))
    assert kernels.resolve_implementation("auto") == "cut"
    monkeypatch.setitem(kernels.IMPLEMENTATIONS, "cut", (lambda: False, None))
    assert kernels.resolve_implementation("auto") == "memfit"


def test_an_fp32_loss_on_cuda_never_gets_cut_whose_backward_takes_half_precision_only(monkeypatch):
    # found on the H100 image (torch 2.11: no native op): the fp32 CPU recipe on a GPU failed in cut's backward with
    # "Backwards requires embeddings to be bf16 or fp16"
    _cut_stand_in(monkeypatch)
    monkeypatch.setitem(kernels.IMPLEMENTATIONS, "torch", (lambda: False, None))
    assert kernels.resolve_implementation("auto") == "cut"
    assert kernels.resolve_implementation("auto", fp32_on_cuda=True) == "memfit"
    with pytest.raises(ValueError, match=r"'cut' runs bf16 or fp16 only on CUDA.*add bf16.*impl=auto"):
        kernels.resolve_implementation("cut", fp32_on_cuda=True)


@pytest.mark.parametrize("dtype, picked", [(torch.float32, "memfit"), (torch.bfloat16, "cut")])
def test_the_cce_strategy_picks_by_the_stacks_compute_dtype_on_cuda(monkeypatch, dtype, picked):
    from types import SimpleNamespace

    from memfit.strategies.chunked_cross_entropy import ChunkedCrossEntropy

    _cut_stand_in(monkeypatch)
    monkeypatch.setitem(kernels.IMPLEMENTATIONS, "torch", (lambda: False, None))
    ctx = SimpleNamespace(on_cuda=True, compute_dtype=dtype)  # the device is only asked, the model stays on the CPU
    model = ChunkedCrossEntropy().transform_model(tiny_model(), ctx)
    assert model.lm_head.loss_fn is kernels.implementation(picked)


def test_cut_without_triton_is_not_present_and_forcing_it_says_the_fix():
    import importlib.util
    if importlib.util.find_spec("triton") is not None:
        pytest.skip("Triton is installed here")
    assert "cut" not in PRESENT
    with pytest.raises(ValueError, match=r"'cut' is not available.*memfit\[kernels\]"):
        kernels.resolve_implementation("cut")


@pytest.mark.parametrize("impl", ["auto", "memfit", "cut"] + (["torch"] if "torch" in PRESENT else []))
def test_stack_cce_with_each_impl_trains_like_full_logits(impl, monkeypatch):
    calls = _cut_stand_in(monkeypatch) if impl == "cut" else None
    batch = {k: torch.tensor([r[k] for r in random_blocks(3, 20)]) for k in ("input_ids", "labels")}
    batch["labels"][0, :5] = -100
    results = []
    for spec in ("none", f"cce16:impl={impl}"):  # full fine-tune: the lm_head is trained
        stack = Stack.from_spec(spec)
        model = stack.apply_model(tiny_model(), stack.context("cpu"))
        nll, n = stack.compute_loss(model, batch, stack.context("cpu"))
        nll.backward()
        results.append((nll.item(), int(n), {k: p.grad for k, p in model.named_parameters()}))
    (l0, n0, g0), (l1, n1, g1) = results
    assert l1 == pytest.approx(l0, rel=1e-5) and n0 == n1
    assert g1["lm_head.weight"] is not None
    for k in g0:
        torch.testing.assert_close(g1[k], g0[k], rtol=1e-4, atol=1e-5)
    if calls is not None:
        assert calls, "the forced implementation was not the one used"


def test_describe_names_the_implementation_and_the_spec_round_trips(monkeypatch):
    _cut_stand_in(monkeypatch)
    cce = Stack.from_spec("cce:impl=cut").strategies[0]
    assert "cut-cross-entropy (exact" in cce.describe()
    assert Stack.from_spec(Stack.from_spec("cce:impl=memfit").spec).strategies[0].impl == "memfit"
    assert "memfit's chunked op" in Stack.from_spec("cce:impl=memfit").strategies[0].describe()


def test_memory_model_uses_each_implementations_transient():
    fixed, per_token = kernels.transient_bytes("memfit", 1000, 64, on_cuda=True)
    assert (fixed, per_token) == (12.0 * 1000 * 64, 0.0)
    assert kernels.transient_bytes("cut", 1000, 64, on_cuda=True) == (0.0, 4.0)
    assert kernels.transient_bytes("cut", 1000, 64, on_cuda=False) == (0.0, 8000.0)
