"""liger: refused clearly where it cannot run; on a CUDA GPU with liger-kernel, it trains like eager."""

from __future__ import annotations

import pytest
import torch

from memfit import Stack
from memfit.core.protocol import StackError
from _models import random_blocks, tiny_model


def test_liger_off_cuda_is_a_clear_stack_error():
    stack = Stack.from_spec("lora:dropout=0+liger")
    with pytest.raises(StackError, match="liger needs a CUDA GPU"):
        stack.apply_model(tiny_model(), stack.context("cpu"))


def test_liger_under_activation_offload_is_refused_with_the_fix():
    with pytest.raises(StackError, match="use offload\\+cce instead"):
        Stack.from_spec("lora:dropout=0+gc+offload+liger")  # at construction, before any model is touched


def test_liger_inside_compile_is_refused_so_the_auto_search_never_builds_it():
    # H200: inductor cannot trace Liger's kernels, and gc+liger+compile failed in backward on an in-place write
    with pytest.raises(StackError, match="liger or compile, not both"):
        Stack.from_spec("lora+bf16+gc+liger+compile")
    from memfit.plan.auto import candidate_classes, enumerate_candidates, environment

    cands = enumerate_candidates(Stack.from_spec("lora+bf16"), candidate_classes(environment(True)), 4)
    assert cands and not any({"liger_kernels", "compile"} <= {s.name for s in c.stack} for c in cands)


def test_liger_and_cce_both_claim_the_loss():
    with pytest.raises(StackError, match="compute_loss"):
        Stack.from_spec("liger+cce")


def _loss_and_grads(spec, batch):
    torch.manual_seed(0)
    stack = Stack.from_spec(spec)
    ctx = stack.context("cuda")
    model = stack.apply_model(tiny_model().cuda(), ctx)
    nll, _ = stack.compute_loss(model, {k: v.cuda() for k, v in batch.items()}, ctx)
    nll.backward()
    return nll.item(), {k: p.grad.float().cpu() for k, p in model.named_parameters() if p.grad is not None}


@pytest.mark.gpu
@pytest.mark.parametrize("spec", ["lora:dropout=0", "lora:dropout=0+gc", "lora:dropout=0+tmlp", "none"])
def test_liger_matches_eager_on_cuda(spec):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    pytest.importorskip("liger_kernel")
    batch = {k: torch.tensor([r[k] for r in random_blocks(2, 32)]) for k in ("input_ids", "labels")}
    batch["labels"][0, :4] = -100
    eager_loss, eager = _loss_and_grads(spec, batch)
    liger_loss, liger = _loss_and_grads(f"{spec}+liger" if spec != "none" else "liger", batch)
    assert liger_loss == pytest.approx(eager_loss, rel=1e-4)
    assert eager.keys() == liger.keys()
    for k in eager:
        torch.testing.assert_close(liger[k], eager[k], rtol=1e-3, atol=1e-4)
