"""Linear + cross-entropy in chunks of tokens: sum_t NLL(softmax(h_t W^T), y_t) without all logits at once.

Each chunk's logits live only while its gradient w.r.t. the hidden states (and the weight, if it requires grad) is
formed inside the forward pass; the backward only scales the stored gradients by the incoming gradient, so no chunk
is recomputed. Matmuls run in `dtype`; log-sum-exp, the loss and the weight-gradient accumulation run in fp32.
`softcap` (Gemma 2's final-logit soft-capping) caps each chunk's logits as the model would, cap * tanh(z / cap),
and its derivative scales the chunk's gradient.
Used by strategies/chunked_cross_entropy.py; other implementations of the same contract build on this one.
"""

from __future__ import annotations

import torch

from ..core.loss import IGNORE_INDEX


class LinearCrossEntropy(torch.autograd.Function):
    """sum_t NLL(softmax(h_t W^T), y_t) over tokens with y_t != -100, in chunks; grads formed in forward."""

    @staticmethod
    def forward(ctx, hidden, weight, labels, chunk: int, dtype: torch.dtype, softcap: float | None = None):
        want_h, want_w = hidden.requires_grad, weight.requires_grad
        w = weight.to(dtype)
        total = torch.zeros((), device=hidden.device, dtype=torch.float32)
        grad_h = torch.empty_like(hidden) if want_h else None
        grad_w = torch.zeros(weight.shape, device=weight.device, dtype=torch.float32) if want_w else None
        for start in range(0, hidden.shape[0], chunk):
            h = hidden[start:start + chunk].to(dtype)
            y = labels[start:start + chunk]
            valid = y != IGNORE_INDEX
            logits = (h @ w.T).float()
            if softcap:
                capped = torch.tanh(logits / softcap)
                logits = capped * softcap
            lse = torch.logsumexp(logits, dim=-1)
            target = logits.gather(1, y.clamp_min(0)[:, None]).squeeze(1)
            total += ((lse - target) * valid).sum()
            if want_h or want_w:
                probs = logits.sub_(lse[:, None]).exp_()  # softmax, reusing the logits' memory
                probs[torch.arange(len(y), device=y.device), y.clamp_min(0)] -= 1.0
                if softcap:  # d(cap * tanh(z / cap)) / dz = 1 - tanh^2
                    probs.mul_(capped.square_().neg_().add_(1.0))
                    del capped
                g = (probs * valid[:, None]).to(dtype)
                del probs, logits
                if want_h:
                    grad_h[start:start + chunk] = (g @ w).to(hidden.dtype)
                if want_w:
                    grad_w.addmm_(g.T.float(), h.float())
        ctx.save_for_backward(*(t for t in (grad_h, grad_w) if t is not None))
        ctx.want = (want_h, want_w)
        return total

    @staticmethod
    def backward(ctx, grad_out):
        saved = iter(ctx.saved_tensors)
        want_h, want_w = ctx.want
        # In place: the stored gradient is as large as the hidden states and is used exactly once.
        gh = next(saved).mul_(grad_out.to(ctx.saved_tensors[0].dtype)) if want_h else None
        gw = next(saved).mul_(grad_out) if want_w else None
        return gh, gw, None, None, None, None


def linear_cross_entropy(hidden, weight, labels, chunk: int = 1024, dtype: torch.dtype | None = None,
                         softcap: float | None = None):
    """Summed NLL of `labels` (-100 ignored) under logits `hidden @ weight.T` (soft-capped by `softcap` if given),
    without materialising all logits."""
    with torch.autocast(hidden.device.type, enabled=False):
        return LinearCrossEntropy.apply(hidden.reshape(-1, hidden.shape[-1]), weight, labels.reshape(-1), chunk,
                                        dtype or hidden.dtype, softcap)
