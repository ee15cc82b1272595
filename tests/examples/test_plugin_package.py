"""examples/plugin is a real installable package: pip installs it (offline, into a temporary target, never the global
environment) and memfit finds its strategy through the `memfit.strategies` entry point: in `memfit stacks`, in
`memfit plan` (its own named memory term), under a launch check, and in training. The CLI runs in-process (its
`main`) with the target on sys.path, as PYTHONPATH would put it: a subprocess per command would spend most of the
time importing torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import memfit
from memfit.cli import main
from memfit.core import registry
from memfit.launch.distributed import check_stack_for_distributed

REPO = Path(__file__).resolve().parents[2]
TINY = dict(architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=2048, hidden_size=64,
            intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=256, tie_word_embeddings=False)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    target, build = tmp_path_factory.mktemp("plugin_site"), tmp_path_factory.mktemp("plugin_build")
    src = build / "plugin"
    subprocess.run(["cp", "-r", str(REPO / "examples" / "plugin"), str(src)], check=True)  # keep the tree clean
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                    "--quiet", "--target", str(target), str(src)], check=True, timeout=120)
    sys.path.insert(0, str(target))
    registry.reload_plugins()
    yield target
    sys.path.remove(str(target))
    sys.modules.pop("memfit_freeze_embeddings", None)
    registry._REGISTRY.pop("freeze_embeddings", None)


def test_memfit_stacks_lists_the_installed_plugin(installed, capsys):
    assert main(["stacks", "bf16+freeze_embeddings"]) == 0
    out = capsys.readouterr().out
    assert any(line.split() == ["freeze_embeddings", "memfit_freeze_embeddings"] for line in out.splitlines())
    assert "input embeddings frozen" in out


def test_memfit_plan_accounts_for_the_plugin_term(installed, tmp_path, capsys):
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY))
    assert main(["plan", "--model-config", str(config), "--stack", "freeze_embeddings", "--seq-len", "32",
                 "--cpu-budget-gib", "0.05", "--fresh", "--out", str(tmp_path / "report")]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("frozen_embeddings"))
    assert line.split()[-1] == "freeze_embeddings"  # the term names its owner
    # its gradient and both AdamW moments, fp32: 2048 x 64 x 12 bytes = 1.5 MiB the plan no longer counts
    assert float(line.split()[1]) == pytest.approx(-1.5, abs=0.05)
    [row] = json.loads(next((tmp_path / "report").glob("*.json")).read_text())["results"]
    gib = row["memory_breakdown_gib"]
    assert gib["frozen_embeddings"] * 2**30 == pytest.approx(-2048 * 64 * 12)
    assert gib["total"] == pytest.approx(sum(v for k, v in gib.items() if k != "total" and not k.startswith("host:")))


def test_the_plugin_trains_and_checks_the_launch(installed):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    stack = memfit.Stack.from_spec("freeze_embeddings+gc")
    model = stack.apply_model(LlamaForCausalLM(LlamaConfig(**TINY)), stack.context("cpu"))
    embed, head = model.get_input_embeddings().weight.detach().clone(), model.lm_head.weight.detach().clone()
    rows = [{"input_ids": list(range(i, i + 32)), "labels": list(range(i, i + 32))} for i in range(8)]
    res = memfit.train(model, stack, rows, memfit.TrainConfig(max_steps=3, micro_batch=2, lr=1e-2, warmup=0.0))
    assert res.steps == 3
    assert torch.equal(embed, model.get_input_embeddings().weight) and not torch.equal(head, model.lm_head.weight)
    with pytest.raises(memfit.StackError, match="use_orig_params"):
        check_stack_for_distributed(stack, "FSDP", fsdp_version=1, fsdp_use_orig_params=False)
