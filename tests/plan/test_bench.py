"""bench: several stacks planned side by side from one model folder, with the comparison written to disk."""

from __future__ import annotations

import json

import pytest

from memfit.plan.bench import bench

BUDGET_GIB = 3.0e6 / 2**30



def test_bench_compares_stacks_and_writes_the_report(tiny_weights_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MEMFIT_CACHE", str(tmp_path / "cache"))
    from memfit import Stack

    released, release = [], Stack.release
    monkeypatch.setattr(Stack, "release", lambda self, net, ctx=None: released.append(self.spec) or release(self, net))
    rows = bench(tiny_weights_dir, ["lora:dropout=0", "lora:dropout=0+gc"], [32], cpu_budget_gib=BUDGET_GIB,
                 out_dir=tmp_path / "out", name="cmp", limit=512)
    plain, ckpt = rows
    assert 0 < plain.max_micro_batch < ckpt.max_micro_batch  # checkpointing keeps less per sample
    assert all(r.seq_len == 32 and r.probe_count > 1 for r in rows)
    assert released == ["lora:dropout=0.0", "lora:dropout=0.0+gc"]  # each model released before the next loads
    printed = capsys.readouterr().out
    assert "lora:dropout=0.0+gc" in printed and "wrote" in printed
    data = json.loads((tmp_path / "out" / "cmp.json").read_text())
    assert [r["max_micro_batch"] for r in data["results"]] == [plain.max_micro_batch, ckpt.max_micro_batch]
    assert (tmp_path / "out" / "cmp.png").exists() and (tmp_path / "out" / "cmp.md").exists()


def test_bench_on_cpu_without_a_budget_is_a_clear_error(tiny_weights_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("MEMFIT_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ValueError, match="--cpu-budget-gib"):
        bench(tiny_weights_dir, ["lora"], [32])
