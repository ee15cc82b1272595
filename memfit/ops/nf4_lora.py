"""A frozen NF4/FP4 (bitsandbytes) linear and its LoRA branch as one autograd Function: y = x W^T + s (d(x) A^T) B^T.

Where a 4-bit QLoRA step spends its time beyond the bf16 stack's (peft's LoRA over bitsandbytes' Linear4bit):
- Dequantization: bnb keeps no dequantized weight. For training-sized inputs its `matmul_4bit` dequantizes W (after
  dequantizing the 8-bit absmax first, with double quant) and runs F.linear; its backward dequantizes again for the
  input gradient. A checkpointed layer pays a third time in its recompute. Memory-bound work: ~2.5 bytes moved per
  weight per pass (4-bit read, 16-bit written), ~7 GB per pass for a 3B model, milliseconds on an H200 against a
  step of seconds at training micro-batches; its share grows as the micro-batch shrinks (small steps, long
  accumulation), so it matters at 32 x 512 more than at 454 x 512. Two kernels per weight per pass as well.
- The unfused LoRA branch: peft clones the base output ("defensively"), casts x to the fp32 adapter dtype (a full
  copy of x per adapted module, kept for backward), runs dropout, A, B and the scaling as separate kernels, and adds.
- Graph breaks under `compile`: none with the versions memfit runs on. bnb >= 0.46 traces `Linear4bit` without
  breaks on torch >= 2.8 (bitsandbytes PR #1616/#1673), and torch._dynamo.explain finds 0 breaks in the attention and
  MLP of a peft-over-bnb 4-bit Llama layer on torch 2.13 + bnb 0.50.2 (tests/strategies/test_quant4bit_fused.py checks
  the fused path stays so). Older pairs broke at every adapted module (Params4bit.t(), quant-state setattr).

What this Function removes, and how the field does the same:
- One Function per adapted linear, forward and backward written out (Unsloth's `LoRA_W`/`matmul_lora`, the same
  shape as Axolotl's `lora_kernels`): the base output and the LoRA branch are computed together, in the compute
  dtype, with no clone and no fp32 copy of x; backward forms only grad x, grad A, grad B (W is frozen).
- Dequantization through bitsandbytes' registered torch.library ops (`torch.ops.bitsandbytes.dequantize_blockwise`
  for the double-quant absmax, `...dequantize_4bit`), which have fake kernels: dynamo traces this Function into the
  layer's graph with no break (independent of bnb's own Params4bit tracing), so inductor fuses dropout, scaling and
  the addition around the matmuls. Written by hand because none of the field's tools plugs into peft's bnb layers as
  memfit loads them: bnb has no LoRA; Unsloth and Axolotl bring their own Triton dequantization (CUDA only) and
  patch the model their own way (Axolotl's kernels also require LoRA dropout 0); torchao's NF4Tensor is its own
  format, and the torchao that provides it breaks peft's LoRA here (benchmarks/README.md, peer_torchtune.py).
- `keep_weight`: the dequantized W saved for backward instead of dequantized again. Inside a checkpointed layer
  that is free in memory terms: the first forward's saved tensors are dropped by the checkpoint, the recompute's W
  lives only until that layer's backward (one layer's 16-bit weights, transient), and the backward reuses it, so a
  checkpointed layer dequantizes twice instead of three times. In an uncheckpointed layer W lives from forward to
  backward: 16-bit weights for every such layer, the memory 4-bit was chosen to save; hence off by default.
  A per-step cache of every dequantized weight would save one more pass but hold the whole model in 16 bits.

Under compile the backward dequantizes through an op of memfit's own (`memfit::dequantize_4bit_for_backward`), not
bnb's. With bnb's op on both sides, AOTAutograd's joint graph held two identical `bitsandbytes.dequantize_4bit` calls
on the same packed weight; the min-cut partitioner (inductor's and aot_eager's) first merges them (common-subexpression
elimination, torch._functorch.config.cse) and then may not recompute the merged node in backward (ops outside its
allowlist, custom ops included, are banned from recomputation), so it saved every layer's dequantized 16-bit W for
backward: keep_weight=True whether asked or not. Measured (torch 2.13, bnb 0.50.2, fp32 CPU): one layer (out 256,
in 128) saved the [256, 128] W under aot_eager and inductor, the packed uint8 weight with cse off or the default
partitioner; a 2-layer tiny Llama (hidden 128, MLP 352, LoRA q/k/v/o, 3 x 40 tokens) saved 3,309,612 bytes per step
compiled (aot_eager and inductor alike), as much as with keep_weight, against 1,966,124 for bnb's own compiled path
(eager: 2,534,444, fused and bnb's alike; the partitioner recomputes some of what eager saves). On the H200 the 3B
model at 32 x 512 peaked at 50.39 GiB, like its bf16 twin and 5.2 GiB above bnb's path. A distinct op cannot be
merged with the forward's, and its inputs are the packed weight and its quant state (tensors the model holds anyway),
so the partitioner keeps the packed weight and the backward dequantizes again, as in eager: now 1,966,124 bytes, the
same as bnb's path (not yet re-measured on a GPU). It takes only `torch.library.custom_op` and `register_fake`
(torch 2.11 and 2.13 alike) and changes no torch setting. The alternatives: marking the node MUST_RECOMPUTE
(selective activation checkpointing) would need a checkpoint inside an autograd.Function's forward; turning cse off
would change every compiled graph of the step.
"""

from __future__ import annotations

from typing import Optional

import torch


def _dequantize(weight: torch.Tensor, absmax: torch.Tensor, blocksize: int, quant_type: str, shape: list[int],
                stored: torch.dtype, dtype: torch.dtype, inner_absmax: Optional[torch.Tensor],
                inner_code: Optional[torch.Tensor], inner_blocksize: int,
                offset: Optional[torch.Tensor]) -> torch.Tensor:
    if inner_absmax is not None:  # double quant: the per-block absmax is itself 8-bit blockwise-quantized, offset
        absmax = torch.ops.bitsandbytes.dequantize_blockwise(absmax, inner_absmax, inner_code, inner_blocksize,
                                                             torch.float32) + offset
    return torch.ops.bitsandbytes.dequantize_4bit(weight, absmax, blocksize, quant_type, shape, stored).to(dtype)


def _parts(weight: torch.Tensor, state, dtype: torch.dtype) -> tuple:
    """The packed weight and its quant state as the tensors and scalars a torch.library op takes."""
    inner = state.state2 if state.nested else None
    return (weight, state.absmax, state.blocksize, state.quant_type, list(state.shape), state.dtype, dtype,
            inner and inner.absmax, inner and inner.code, inner.blocksize if inner else 0,
            state.offset if inner else None)


def dequantize(weight: torch.Tensor, state, dtype: torch.dtype) -> torch.Tensor:
    """The 16/32-bit [out, in] weight of a packed 4-bit bnb weight, as `bitsandbytes.functional.dequantize_4bit`
    computes it (same ops, same order: absmax first when double-quantized, then the weight in its stored dtype)."""
    return _dequantize(*_parts(weight, state, dtype))


# The same computation as an op of memfit's own, called only in backward: a distinct op that common-subexpression
# elimination cannot merge with the forward's dequantization (module docstring, "Under compile").
@torch.library.custom_op("memfit::dequantize_4bit_for_backward", mutates_args=())
def _dequantize_for_backward(weight: torch.Tensor, absmax: torch.Tensor, blocksize: int, quant_type: str,
                             shape: list[int], stored: torch.dtype, dtype: torch.dtype,
                             inner_absmax: Optional[torch.Tensor], inner_code: Optional[torch.Tensor],
                             inner_blocksize: int, offset: Optional[torch.Tensor]) -> torch.Tensor:
    return _dequantize(weight, absmax, blocksize, quant_type, shape, stored, dtype, inner_absmax, inner_code,
                       inner_blocksize, offset)


@_dequantize_for_backward.register_fake
def _(weight, absmax, blocksize, quant_type, shape, stored, dtype, inner_absmax, inner_code, inner_blocksize, offset):
    return weight.new_empty(shape, dtype=dtype)


class NF4LoRALinear(torch.autograd.Function):
    """forward(x, xd, weight, state, bias, A, B, scale, keep_weight): x the layer input, xd = dropout(x) (computed
    outside so autograd owns the mask), all in one compute dtype. Returns x W^T + bias + scale (xd A^T) B^T; with A
    None, the frozen linear alone (a 4-bit layer LoRA does not adapt)."""

    @staticmethod
    def forward(ctx, x, xd, weight, state, bias, a, b, scale: float, keep_weight: bool):
        w = dequantize(weight, state, x.dtype)
        out = torch.nn.functional.linear(x, w, bias)
        xa = None
        if a is not None:
            xa = torch.nn.functional.linear(xd, a)  # [.., r]: the low-rank activation, tiny
            out = out + scale * torch.nn.functional.linear(xa, b)
        ctx.state, ctx.scale, ctx.keep_weight = state, scale, keep_weight
        # x itself is not saved: the frozen weight needs no gradient. xd and xa are what A's and B's gradients need.
        ctx.save_for_backward(xd, xa, a, b, w if keep_weight else weight)
        return out

    @staticmethod
    def backward(ctx, grad):
        xd, xa, a, b, w_or_packed = ctx.saved_tensors
        grad_x = grad_xd = grad_a = grad_b = None
        if ctx.needs_input_grad[0]:
            w = w_or_packed
            if not ctx.keep_weight:
                w = _dequantize_for_backward(*_parts(w_or_packed, ctx.state, grad.dtype))
            grad_x = grad @ w
        if a is not None and any(ctx.needs_input_grad[i] for i in (1, 5, 6)):
            g = grad.reshape(-1, grad.shape[-1])
            gb = ctx.scale * (g @ b)  # [M, r]: the gradient of xa
            if ctx.needs_input_grad[1]:
                grad_xd = (gb @ a).view(*grad.shape[:-1], a.shape[-1])
            if ctx.needs_input_grad[5]:
                grad_a = gb.t() @ xd.reshape(-1, xd.shape[-1])
            if ctx.needs_input_grad[6]:
                grad_b = ctx.scale * g.t() @ xa.reshape(-1, xa.shape[-1])
        return grad_x, grad_xd, None, None, None, grad_a, grad_b, None, None


def nf4_linear(x: torch.Tensor, weight: torch.Tensor, state, bias: Optional[torch.Tensor], keep_weight: bool = False,
               lora: Optional[tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]] = None) -> torch.Tensor:
    """The frozen 4-bit linear, fused with its LoRA branch when `lora` = (dropout(x), A, B, scale) is given. A and B
    are cast to x's dtype here: their gradients flow back to the fp32 adapters through the cast, as under autocast."""
    if lora is None:
        return NF4LoRALinear.apply(x, None, weight, state, bias, None, None, 0.0, keep_weight)
    xd, a, b, scale = lora
    return NF4LoRALinear.apply(x, xd, weight, state, bias, a.to(x.dtype), b.to(x.dtype), float(scale), keep_weight)
