"""liger: refused clearly where it cannot run; on a CUDA GPU with liger-kernel, it trains like eager. On CPU, the
patching itself (per model, reversible, RoPE never process-wide) runs with plain-torch stand-ins for the kernels."""

from __future__ import annotations

import pytest
import torch

from memfit import Stack
from memfit.core.protocol import StackError
from memfit.strategies import liger
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


# ---- the patching logic on CPU, with stand-ins that compute what Liger's kernels compute -----------------------
class FakeLiger:
    """Counts every call of a 'kernel'; each computes exactly what the module it replaces computes."""

    def __init__(self):
        from transformers.models.llama import modeling_llama

        self.calls = {"rope": 0, "norm": 0, "mlp": 0, "loss": 0}
        self.original_rope = modeling_llama.apply_rotary_pos_emb

    def api(self, ctx):
        return liger.LigerAPI(self.rope, self.patcher("norm"), self.patcher("mlp"), self.loss)

    def rope(self, *args, **kwargs):
        self.calls["rope"] += 1
        return self.original_rope(*args, **kwargs)

    def patcher(self, kind):
        def patch(module):  # as Liger's _patch_*_module: an instance-bound forward and the kernel's settings
            import types

            def forward(this, *args):
                self.calls[kind] += 1
                return type(this).forward(this, *args)

            module.forward, module.casting_mode = types.MethodType(forward, module), "llama"
            type(module).__name__ = f"Liger{kind}"  # as recent Liger does: the class, i.e. every model's
        return patch

    def loss(self, hidden, weight, targets, chunk, dtype):
        self.calls["loss"] += 1
        logits = hidden.reshape(-1, hidden.shape[-1]) @ weight.T
        return torch.nn.functional.cross_entropy(logits.float(), targets.reshape(-1), reduction="sum")


@pytest.fixture
def fake(monkeypatch):
    fake = FakeLiger()
    monkeypatch.setattr(liger, "liger_api", fake.api)
    return fake


def _ids():
    return torch.tensor([r["input_ids"] for r in random_blocks(2, 16)])


def _logits(model):
    with torch.no_grad():
        return model(_ids()).logits


def test_liger_rope_belongs_to_its_model_and_outlives_another_models_restore(fake):
    from transformers.models.llama import modeling_llama

    stack = Stack.from_spec("liger")
    ctx = stack.context("cpu")
    plain_logits = _logits(tiny_model().eval())
    first, second = (stack.apply_model(tiny_model(), ctx).eval() for _ in range(2))
    assert modeling_llama.apply_rotary_pos_emb is fake.original_rope  # nothing process-wide is left swapped
    assert type(first.model.norm).__name__ == "LlamaRMSNorm" and type(first.model.layers[0].mlp).__name__ == "LlamaMLP"
    torch.testing.assert_close(_logits(first), plain_logits, rtol=0, atol=0)
    assert fake.calls["rope"] == 2 and fake.calls["norm"] == 5 and fake.calls["mlp"] == 2  # 2 layers, final norm
    _logits(tiny_model().eval())  # a plain model beside them runs transformers' own RoPE
    assert fake.calls["rope"] == 2 and modeling_llama.apply_rotary_pos_emb is fake.original_rope
    stack.remove_model(first, ctx)
    _logits(second)  # restoring the first model took nothing from the second
    assert fake.calls["rope"] == 4 and fake.calls["norm"] == 10
    _logits(first)
    assert fake.calls["rope"] == 4 and fake.calls["norm"] == 10


def test_liger_restore_leaves_the_model_as_it_was_and_its_loss_is_its_own(fake):
    original = tiny_model()
    types = [type(m) for m in original.modules()]
    reference = _logits(original.eval())
    batch = {k: torch.tensor([r[k] for r in random_blocks(2, 16)]) for k in ("input_ids", "labels")}
    plain_nll, plain_n = Stack([]).compute_loss(original, batch, Stack([]).context("cpu"))
    stack = Stack.from_spec("lora:dropout=0+liger")
    ctx = stack.context("cpu")
    model = stack.apply_model(original, ctx)
    nll, n = stack.compute_loss(model, batch, ctx)
    assert fake.calls["loss"] == 1 and n == plain_n
    torch.testing.assert_close(nll, plain_nll, rtol=1e-5, atol=1e-5)  # LoRA starts as the identity
    model = stack.remove_model(model, ctx).eval()
    assert [type(m) for m in model.modules()] == types
    assert not any("forward" in m.__dict__ or "casting_mode" in m.__dict__ for m in model.modules())
    torch.testing.assert_close(_logits(model), reference, rtol=0, atol=0)


def test_liger_refuses_families_its_llama_kernels_would_compute_wrongly(fake):
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model("gemma2", vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                  num_attention_heads=2, num_key_value_heads=1, head_dim=16, pad_token_id=0)
    stack = Stack.from_spec("liger")
    with pytest.raises(StackError, match="do not compute gemma2's norms/MLP exactly"):
        stack.apply_model(AutoModelForCausalLM.from_config(config), stack.context("cpu"))
