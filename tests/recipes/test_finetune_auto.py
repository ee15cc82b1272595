"""`stack: auto` in the fine-tune job: the CUDA default, resolved through the planner's auto search."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from memfit.plan.auto import AutoResult
from memfit.recipes.finetune import FinetuneConfig, auto_stack


def test_cuda_default_is_auto_and_cpu_default_stays_fixed():
    assert FinetuneConfig().resolved("cuda").stack == "auto"
    assert FinetuneConfig().resolved("cpu").stack == (  # fast on CPU: LoRA on all linear layers, no checkpointing
        "lora:targets=q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj,dropout=0+ga:effective_batch=8")
    assert FinetuneConfig(stack="lora+gc").resolved("cuda").stack == "lora+gc"


def test_auto_stack_asks_the_planner_with_the_run_settings(monkeypatch):
    seen = {}

    def fake_choose(model, base, **kw):
        seen.update(model=model, base=base, **kw)
        return AutoResult("lora+cce", "why", kw["seq_len"], kw["target_effective_batch"])

    monkeypatch.setattr("memfit.plan.choose.choose_stack", fake_choose)
    cfg = FinetuneConfig(stack="auto").resolved("cpu").model_copy(update={"stack": "auto"})
    state = SimpleNamespace(num_processes=1, device=torch.device("cpu"))
    assert auto_stack(cfg, state) == "lora+cce"
    assert seen["base"] == "lora" and seen["seq_len"] == cfg.seq_len and seen["cpu_budget_gib"] == cfg.cpu_budget_gib


def test_auto_stack_under_several_processes_is_a_clear_error():
    cfg = FinetuneConfig(stack="auto").resolved("cpu")
    with pytest.raises(ValueError, match="memfit plan --auto"):
        auto_stack(cfg, SimpleNamespace(num_processes=2, device=torch.device("cpu")))
