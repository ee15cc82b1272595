"""The fused 4-bit + LoRA op against bitsandbytes' own path (matmul_4bit plus the LoRA branch written out as peft
computes it): same dequantized weight, same outputs, same gradients for x, A and B, fp32 on the CPU."""

from __future__ import annotations

import pytest
import torch

bnb = pytest.importorskip("bitsandbytes")

from memfit.ops.nf4_lora import dequantize, nf4_linear  # noqa: E402


def packed(out_f: int = 48, in_f: int = 64, quant_type: str = "nf4", nested: bool = True, seed: int = 0):
    """A bnb Linear4bit holding a random [out_f, in_f] weight, quantized on the CPU (double quant when nested)."""
    torch.manual_seed(seed)
    layer = bnb.nn.Linear4bit(in_f, out_f, bias=False, compute_dtype=torch.float32, compress_statistics=nested,
                              quant_type=quant_type)
    weight = bnb.nn.Params4bit(torch.randn(out_f, in_f) / in_f**0.5, requires_grad=False, compress_statistics=nested,
                               quant_type=quant_type)
    layer.weight = weight._quantize("cpu")  # what moving it to a device does
    return layer


@pytest.mark.parametrize("quant_type, nested", [("nf4", True), ("nf4", False), ("fp4", True)])
def test_dequantize_is_bitsandbytes_own(quant_type, nested):
    layer = packed(quant_type=quant_type, nested=nested)
    state = layer.weight.quant_state
    assert state.nested == nested
    want = bnb.functional.dequantize_4bit(layer.weight, state).float()
    torch.testing.assert_close(dequantize(layer.weight, state, torch.float32), want, rtol=0, atol=0)


@pytest.mark.parametrize("keep_weight", [False, True])
def test_outputs_and_gradients_match_the_bitsandbytes_path(keep_weight):
    layer = packed()
    state, r, scale = layer.weight.quant_state, 4, 2.5
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(3, 5, 64, generator=g)
    a0, b0 = torch.randn(r, 64, generator=g) * 0.1, torch.randn(48, r, generator=g) * 0.1
    mask = (torch.rand(3, 5, 64, generator=g) > 0.25).float() / 0.75  # one dropout draw, shared by both paths

    def run(fused: bool):
        x, a, b = (t.clone().requires_grad_(True) for t in (x0, a0, b0))
        xd = x * mask
        if fused:
            y = nf4_linear(x, layer.weight, state, None, keep_weight, (xd, a, b, scale))
        else:  # peft's Linear4bit: base through bnb, then lora_B(lora_A(dropout(x))) * scaling
            y = bnb.matmul_4bit(x, layer.weight.t(), quant_state=state) + (xd @ a.t() @ b.t()) * scale
        (y * torch.linspace(-1, 1, 48)).sum().backward()
        return y.detach(), x.grad, a.grad, b.grad

    for got, want in zip(run(True), run(False)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_without_lora_it_is_the_frozen_linear_and_needs_no_input_saved():
    layer = packed()
    state = layer.weight.quant_state
    x = torch.randn(2, 7, 64, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = nf4_linear(x, layer.weight, state, None)
    torch.testing.assert_close(y, bnb.matmul_4bit(x.detach(), layer.weight.t(), quant_state=state))
    assert not any(t.data_ptr() == x.data_ptr() for t in saved if t is not None)  # frozen W: x is not kept
    assert not any(t.is_floating_point() and t.shape == (48, 64) for t in saved if t is not None)  # nor the 16/32-bit W
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.ones(2, 7, 48) @ dequantize(layer.weight, state, torch.float32))


@pytest.mark.parametrize("keep_weight", [False, True])
def test_compiled_it_saves_the_packed_weight_unless_asked_to_keep_w(keep_weight):
    """aot_eager partitions the joint graph as inductor does (min cut after common-subexpression elimination), which
    once merged the backward's dequantization into the forward's and saved W; x, y and W differ in element count."""
    layer = packed()
    state, r, scale = layer.weight.quant_state, 4, 2.5
    g = torch.Generator().manual_seed(1)
    x0, a0, b0 = torch.randn(3, 5, 64, generator=g), torch.randn(r, 64, generator=g), torch.randn(48, r, generator=g)
    weights = torch.linspace(-1, 1, 48)

    def fused(x, a, b):
        return nf4_linear(x, layer.weight, state, None, keep_weight, (x * 0.5, a, b, scale))

    def run(fn):
        x, a, b = (t.clone().requires_grad_(True) for t in (x0, a0, b0))
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
            y = fn(x, a, b)
        (y * weights).sum().backward()
        return saved, (y.detach(), x.grad, a.grad, b.grad)

    def bnb_path(x, a, b):
        return bnb.matmul_4bit(x, layer.weight.t(), quant_state=state) + ((x * 0.5) @ a.t() @ b.t()) * scale

    try:
        saved, got = run(torch.compile(fused, backend="aot_eager"))
    finally:
        torch._dynamo.reset()
    dequantized = [t for t in saved if t.is_floating_point() and t.numel() == 48 * 64]
    assert len(dequantized) == (1 if keep_weight else 0)
    assert keep_weight or any(t.dtype == torch.uint8 and t.numel() == 48 * 64 // 2 for t in saved)  # the packed W
    for got_t, want in zip(got, run(bnb_path)[1]):
        torch.testing.assert_close(got_t, want, rtol=1e-5, atol=1e-5)
