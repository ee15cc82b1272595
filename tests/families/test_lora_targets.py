"""LoRA's target presets (attention, mlp, all-linear) resolve to each family's own projections (Phi-3's fused
qkv_proj / gate_up_proj), a single target is accepted, and names a family does not have are refused with the real
ones, by the stack and by the estimate alike."""

from __future__ import annotations

import pytest

import memfit
from memfit import Stack
from memfit.core.protocol import StackError
from _families import family_config, family_model


@pytest.mark.parametrize("preset, phi3, others", [
    ("attention", {"qkv_proj", "o_proj"}, {"q_proj", "k_proj", "v_proj", "o_proj"}),
    ("mlp", {"gate_up_proj", "down_proj"}, {"gate_proj", "up_proj", "down_proj"}),
    ("all-linear", {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"},
     {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"})])
@pytest.mark.parametrize("model_type", ["phi3", "qwen3", "gemma2"])
def test_lora_presets_resolve_per_family(model_type, preset, phi3, others):
    stack = Stack.from_spec(f"lora:targets={preset}")
    model = stack.apply_model(family_model(model_type), stack.context("cpu"))
    adapted = {n.split(".")[-4] for n, _ in model.named_parameters() if n.endswith("lora_A.default.weight")}
    assert adapted == (phi3 if model_type == "phi3" else others)


def test_lora_single_target_and_missing_names():
    stack = Stack.from_spec("lora:targets=q_proj")  # one name, not a list
    assert stack.get("lora").targets == ["q_proj"]
    stack.apply_model(family_model("qwen2"), stack.context("cpu"))
    with pytest.raises(StackError, match=r"q_proj do not exist in Phi3ForCausalLM .*Linear layers are "
                                         r"down_proj, gate_up_proj, o_proj, qkv_proj"):
        stack.apply_model(family_model("phi3"), stack.context("cpu"))
    with pytest.raises(StackError, match=r"q_proj do not exist in a Phi-3/3.5 model"):
        memfit.estimate(stack, family_config("phi3"), 64)
