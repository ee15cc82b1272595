"""`stack: auto` in the fine-tune job: the CUDA default, resolved through the planner's auto search."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from memfit.plan.auto import AutoResult
from memfit.recipes.finetune import FinetuneConfig, auto_stack

sys.path.insert(0, str(Path(__file__).parent))
from test_finetune import english_page, tiny_model_dir, tiny_tokenizer  # noqa: E402,F401  (fixtures)


def test_cuda_default_is_auto_and_cpu_default_stays_fixed():
    assert FinetuneConfig().resolved("cuda").stack == "auto"
    assert FinetuneConfig().resolved("cpu").stack == (  # fast on CPU: LoRA on all linear layers, no checkpointing
        "lora:targets=all-linear,dropout=0+cce+ga:effective_batch=8")
    assert FinetuneConfig(stack="lora+gc").resolved("cuda").stack == "lora+gc"


def test_auto_stack_asks_the_planner_with_the_run_settings(monkeypatch):
    seen = {}

    def fake_choose(model, base, **kw):
        seen.update(model=model, base=base, **kw)
        return AutoResult("lora+cce", "why", kw["seq_len"], kw["target_effective_batch"])

    monkeypatch.setattr("memfit.plan.choose.choose_stack", fake_choose)
    cfg = FinetuneConfig(stack="auto").resolved("cpu").updated(stack="auto")
    state = SimpleNamespace(num_processes=1, device=torch.device("cpu"))
    assert auto_stack(cfg, state) == "lora+cce"
    assert seen["base"] == "lora" and seen["seq_len"] == cfg.data.seq_len and seen["cpu_budget_gib"] == cfg.plan.cpu_budget_gib


def test_auto_stack_under_several_processes_is_a_clear_error():
    cfg = FinetuneConfig(stack="auto").resolved("cpu")
    with pytest.raises(ValueError, match="memfit plan --auto"):
        auto_stack(cfg, SimpleNamespace(num_processes=2, device=torch.device("cpu")))


def test_auto_trains_at_the_target_not_above_it_under_the_winners_runtime(tmp_path, monkeypatch, tiny_model_dir):
    """The H200 run planned max 59 for a target of 64 and trained 59 x 2 = 118. With a cap of 5 for a target of 8
    the run trains 4 x 2 = 8 (not 5 x 2 = 10), and the chosen stack's declared settings are applied."""
    import memfit.recipes.finetune as finetune

    monkeypatch.setenv("MEMFIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("memfit.plan.choose.choose_stack", lambda model, base, **kw: AutoResult(
        "lora:dropout=0", "why", kw["seq_len"], kw["target_effective_batch"]))
    configured: list = []
    real = finetune.configure_runtime
    monkeypatch.setattr(finetune, "configure_runtime", lambda stack=None: configured.append(stack) or real(stack))
    notes = tmp_path / "notes"
    notes.mkdir()
    for i in range(3):
        (notes / f"note{i}.md").write_text("\n".join(english_page(seed=i) for _ in range(2)))
    cfg = FinetuneConfig.model_validate({"sources": [{"kind": "text", "path": str(notes), "name": "notes"}]})
    results = finetune.run_finetune(cfg, stack="auto", model=str(tiny_model_dir), output_dir=str(tmp_path / "out"),
                                    run_name="auto", seq_len=32, target_effective_batch=8, max_steps=1,
                                    eval_context=32, eval_max_tokens=32, cpu_budget_gib=0.004, max_micro_batch=5,
                                    progress=False)
    assert results["max_batch_size"] == results["plan"]["max_micro_batch"] == 5  # the cap decided the max
    assert results["plan"]["micro_batch"] == results["train"]["micro_batch"] == 4
    assert results["gradient_accumulation_steps"] == 2 and results["effective_batch_size"] == 8
    assert configured[0] is None and configured[-1].spec.startswith("lora")  # after auto_stack chose
