"""`memfit plan --auto` / `--max-seq-len` end to end on CPU: a tiny model folder, the simulated meter, real probes."""

from __future__ import annotations

import json


from memfit.cli import main
from memfit.core.protocol import EXACT, auto_traits
from memfit import Stack

BUDGET_GIB = 1.5e6 / 2**30  # the tiny model's plain LoRA stack fits a few samples of 64 tokens



def test_plan_auto_picks_an_exact_stack_and_writes_the_frontier(tiny_weights_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MEMFIT_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "auto.json"
    rc = main(["plan", "--auto", "--model", tiny_weights_dir, "--stack", "lora:dropout=0", "--seq-len", "64",
               "--target-effective-batch", "8", "--cpu-budget-gib", str(BUDGET_GIB), "--probe-budget", "14",
               "--json", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["winner"] and data["probe_count"] >= 1 and data["search_seconds"] > 0
    assert all(auto_traits(s)["lossiness"] == EXACT for s in Stack.from_spec(data["winner"]))
    printed = capsys.readouterr().out
    assert "micro-batch 1: fits" in printed and "winner:" in printed  # one line per probe as it happens
    # tokens/s are timed at each training size (2 warm-up + 3 timed steps), counted apart from the search probes
    timed = [r for r in data["frontier"] if r["tokens_per_s"]]
    assert timed and all(r["timing_steps"] == 5 for r in timed)
    assert data["timing_steps"] == sum(r["timing_steps"] for r in data["frontier"])
    assert data["probe_count"] == sum(r["probes"] for r in data["frontier"]) and "timing " in printed


def test_plan_max_seq_len_prints_and_writes_each_stack(tiny_weights_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MEMFIT_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "seq.json"
    rc = main(["plan", "--max-seq-len", "--model", tiny_weights_dir, "--stack", "lora:dropout=0+gc",
               "--cpu-budget-gib", str(BUDGET_GIB), "--json", str(out)])
    assert rc == 0
    (row,) = json.loads(out.read_text())["results"]
    assert 2 < row["max_seq_len"] <= 256 and row["micro_batch"] == 1
    assert "seq len" in capsys.readouterr().out


def test_auto_without_a_target_is_a_one_line_error(capsys):
    assert main(["plan", "--auto", "--seq-len", "64"]) == 2
    assert "--target-effective-batch" in capsys.readouterr().err


def test_release_undoes_process_wide_patches_and_compiled_parts():
    """A strategy patching transformers' module-level RoPE (as liger does) must not leak into the next candidate."""
    from typing import ClassVar

    from pydantic import BaseModel
    from transformers.models.llama import modeling_llama

    from _models import tiny_model
    from memfit.core.protocol import strategy_config
    from memfit.plan.choose import release

    original = modeling_llama.apply_rotary_pos_emb

    class PatchRope(BaseModel):
        model_config = strategy_config()
        name: ClassVar[str] = "patch_rope"
        phase: ClassVar[int] = 50

        def describe(self) -> str:
            return "process-wide RoPE patch"

        def transform_model(self, model, ctx):
            modeling_llama.apply_rotary_pos_emb = lambda *a, **k: original(*a, **k)
            return model

        def restore_model(self, model, ctx):
            modeling_llama.apply_rotary_pos_emb = original
            return model

    stack = Stack([*Stack.from_spec("lora+gc+compile:backend=aot_eager"), PatchRope()])
    net = stack.apply_model(tiny_model(), stack.context("cpu"))
    assert modeling_llama.apply_rotary_pos_emb is not original
    release(net, stack)
    assert modeling_llama.apply_rotary_pos_emb is original
    parts = [m for m in net.modules() if hasattr(m, "_compiled_call_impl")]
    assert parts and all(m._compiled_call_impl is None for m in parts)


def test_each_candidate_is_measured_under_its_declared_runtime_settings(monkeypatch, tiny_weights_dir):
    """compile declares a dynamo recompile limit; the H200 auto run hit dynamo's default of 8 because the process
    was configured without a stack. measure() applies each candidate's own settings before its probes."""
    import memfit.plan.choose as choose
    from memfit.plan.planner import PlanResult
    from memfit.runtime import configure_runtime

    applied: list[str] = []
    monkeypatch.setattr(choose, "configure_runtime", lambda stack: applied.append(stack.spec))
    monkeypatch.setattr(choose, "plan", lambda net, stack, **kw: PlanResult(stack.spec, 64, 0, 0, 0))

    def one_candidate(base, *, measure, **kw):
        measure(Stack.from_spec("lora:dropout=0+compile:backend=aot_eager"))
        return choose.AutoResult(None, "none", kw["seq_len"], kw["target_effective_batch"])

    monkeypatch.setattr(choose, "auto_search", one_candidate)
    choose.choose_stack(tiny_weights_dir, "lora:dropout=0", seq_len=64, target_effective_batch=8,
                        cpu_budget_gib=BUDGET_GIB)
    assert len(applied) == 1 and "compile" in applied[0]
    assert configure_runtime(Stack.from_spec(applied[0]))["dynamo_recompile_limit"] >= 64  # what that call sets
