from __future__ import annotations

import torch

import memfit
from memfit import Stack
from _models import random_blocks, tiny_model


def _residual_dtypes(model, ctx_dtype):
    seen = []
    hooks = [layer.register_forward_hook(lambda m, i, o: seen.append(o[0].dtype if isinstance(o, tuple) else o.dtype))
             for layer in model.base_model.model.model.layers]
    batch = {k: torch.tensor([random_blocks(1, 8)[0][k]]) for k in ("input_ids", "labels")}
    with torch.autocast("cpu", dtype=ctx_dtype):
        model(input_ids=batch["input_ids"])
    for h in hooks:
        h.remove()
    return set(seen)


def test_residual_stream_stays_in_the_compute_dtype(tmp_path):
    tiny_model().save_pretrained(tmp_path)
    model = memfit.load_model(str(tmp_path), Stack.from_spec("lora+bf16"))
    assert _residual_dtypes(model, torch.bfloat16) == {torch.bfloat16}
    amp = memfit.load_model(str(tmp_path), Stack.from_spec("lora+bf16:weights=fp32"))
    assert _residual_dtypes(amp, torch.bfloat16) == {torch.float32}  # the classic-AMP promotion we avoid


def test_fp16_configures_the_loss_scaler_and_bf16_does_not():
    ctx = Stack.from_spec("lora+fp16").context("cpu")
    assert Stack.from_spec("lora+fp16").accelerator_kwargs(ctx) == {"mixed_precision": "fp16"}
    assert Stack.from_spec("lora+fp16").model_kwargs(ctx) == {"dtype": torch.float16}
    assert Stack.from_spec("bf16").compute_dtype == torch.bfloat16
