"""The exact linear + cross-entropy implementations memfit can use, and how it picks one.

All share one contract: `fn(hidden [T, H], weight [V, H], targets [T], chunk, dtype, softcap=None) -> summed NLL`
over targets != -100, gradients for hidden and (if it requires grad) weight, never all T x V logits kept for backward.
`softcap` (Gemma 2's final_logit_softcapping) caps the logits as cap * tanh(z / cap); torch's native op cannot, so a
soft-capping model never gets it (auto skips it, an explicit choice is refused).
  - "torch": torch.nn.functional.linear_cross_entropy with chunking options (torch >= 2.12; absent on 2.11).
  - "cut":   Apple's cut-cross-entropy, exact (filter_eps=None: no gradient filtering). Its Triton kernel needs
             CUDA; without Triton the package does not import, so it is simply not present.
  - "memfit": memfit's own chunked op (ops/linear_cross_entropy.py), any torch >= 2.4.
"auto" takes the first present in that order that can do the job: cut's CUDA backward kernel takes bf16/fp16 only,
so an fp32 compute on CUDA (torch 2.11 has no native op) gets memfit's op, not an assertion in backward.
Transient bytes per implementation feed the memory model.
"""

from __future__ import annotations

import importlib.util
from typing import Callable

import torch

from ..core.loss import IGNORE_INDEX
from .linear_cross_entropy import linear_cross_entropy as memfit_linear_cross_entropy

AUTO_ORDER = ("torch", "cut", "memfit")


def _torch_linear_cross_entropy(hidden, weight, targets, chunk: int, dtype: torch.dtype, softcap=None):
    if softcap:  # resolve_implementation never picks torch for a soft-capping model; never a silent uncapped loss
        raise ValueError("torch.nn.functional.linear_cross_entropy cannot soft-cap logits")
    options = torch.nn.LinearCrossEntropyOptions(batch_chunk_size=chunk)
    with torch.autocast(hidden.device.type, enabled=False):
        return torch.nn.functional.linear_cross_entropy(
            hidden.reshape(-1, hidden.shape[-1]).to(dtype), weight.to(dtype), targets.reshape(-1),
            reduction="sum", ignore_index=IGNORE_INDEX, options=options).float()


def _cut_linear_cross_entropy(hidden, weight, targets, chunk: int, dtype: torch.dtype, softcap=None):
    from cut_cross_entropy import linear_cross_entropy  # imported lazily: it imports Triton at load time

    # the Triton kernel on CUDA; elsewhere cut's torch.compile path (which does build the logits)
    impl = "cce" if hidden.is_cuda else "torch_compile"
    with torch.autocast(hidden.device.type, enabled=False):
        return linear_cross_entropy(hidden.reshape(-1, hidden.shape[-1]).to(dtype), weight.to(dtype),
                                    targets.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum",
                                    filter_eps=None, impl=impl, softcap=softcap).float()


def _torch_present() -> bool:
    return hasattr(torch.nn.functional, "linear_cross_entropy") and hasattr(torch.nn, "LinearCrossEntropyOptions")


def _cut_present() -> bool:
    if importlib.util.find_spec("cut_cross_entropy") is None:
        return False
    try:  # installed without Triton (any CPU machine) it fails on import: not usable here
        import cut_cross_entropy  # noqa: F401
    except ImportError:
        return False
    return True


IMPLEMENTATIONS: dict[str, tuple[Callable[[], bool], Callable]] = {
    "torch": (_torch_present, _torch_linear_cross_entropy),
    "cut": (_cut_present, _cut_linear_cross_entropy),
    "memfit": (lambda: True, memfit_linear_cross_entropy),
}

SOFTCAPS = {"torch": False, "cut": True, "memfit": True}  # which implementations can soft-cap logits
HALF_ONLY_ON_CUDA = {"torch": False, "cut": True, "memfit": False}  # cut's CUDA backward: bf16/fp16 embeddings only

DESCRIPTIONS = {
    "torch": "torch.nn.functional.linear_cross_entropy (native, chunked)",
    "cut": "cut-cross-entropy (exact, no gradient filtering)",
    "memfit": "memfit's chunked op",
}


def present_implementations(softcap: bool = False, fp32_on_cuda: bool = False) -> list[str]:
    return [name for name in AUTO_ORDER if IMPLEMENTATIONS[name][0]() and (SOFTCAPS[name] or not softcap)
            and not (fp32_on_cuda and HALF_ONLY_ON_CUDA[name])]


def resolve_implementation(impl: str, softcap: bool = False, fp32_on_cuda: bool = False) -> str:
    """The implementation `impl` names ("auto": the fastest exact one present that can soft-cap the logits if the
    model does and runs the compute dtype on this device); a clear error if it is absent or cannot do the job.
    `fp32_on_cuda`: the loss runs on CUDA in fp32 (a stack without bf16/fp16)."""
    if impl == "auto":
        return present_implementations(softcap, fp32_on_cuda)[0]
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f"unknown cross-entropy implementation {impl!r}; use one of auto, {', '.join(AUTO_ORDER)}")
    if softcap and not SOFTCAPS[impl]:
        raise ValueError(f"cross-entropy implementation {impl!r} cannot soft-cap logits, which this model does "
                         f"(final_logit_softcapping, Gemma 2): use cce:impl=auto or cce:impl=memfit")
    if fp32_on_cuda and HALF_ONLY_ON_CUDA[impl]:
        raise ValueError(f"cross-entropy implementation {impl!r} runs bf16 or fp16 only on CUDA and this stack "
                         f"computes in fp32: add bf16 to the stack, or use cce:impl=auto")
    if not IMPLEMENTATIONS[impl][0]():
        fix = ("install memfit[kernels] (cut-cross-entropy needs Triton, i.e. a CUDA machine)" if impl == "cut"
               else "upgrade torch to >= 2.12")
        raise ValueError(f"cross-entropy implementation {impl!r} is not available here: {fix}, or use cce:impl=auto")
    return impl


def implementation(name: str) -> Callable:
    return IMPLEMENTATIONS[name][1]


def transient_bytes(name: str, vocab: int, chunk_tokens: int, on_cuda: bool) -> tuple[float, float]:
    """(fixed bytes, bytes per token) the loss needs beyond the hidden states and their gradient, at its peak.
    memfit / torch: one chunk's fp32 logits, softmax and its compute-dtype copy (~12 bytes per entry), fixed.
    cut on CUDA: logits live in on-chip blocks only; an fp32 log-sum-exp per token remains.
    cut elsewhere (its torch.compile path): fp32 logits and their gradient for every token."""
    if name == "cut":
        return (0.0, 4.0) if on_cuda else (0.0, 8.0 * vocab)
    return 12.0 * vocab * chunk_tokens, 0.0
