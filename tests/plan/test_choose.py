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
