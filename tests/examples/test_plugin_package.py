"""examples/plugin is a real installable package: pip installs it (offline, into a temporary target, never the global
environment) and memfit finds its strategy through the `memfit.strategies` entry point: in `memfit stacks`, in
`memfit plan` (its own named memory term), under a launch check, and in training."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TINY = dict(architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=2048, hidden_size=64,
            intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=256, tie_word_embeddings=False)

TRAIN = """
import torch, memfit
from memfit.launch.distributed import check_stack_for_distributed
from transformers import LlamaConfig, LlamaForCausalLM
torch.manual_seed(0)
stack = memfit.Stack.from_spec("freeze_embeddings+gc")
model = stack.apply_model(LlamaForCausalLM(LlamaConfig(**%r)), stack.context("cpu"))
before = model.get_input_embeddings().weight.detach().clone(), model.lm_head.weight.detach().clone()
rows = [{"input_ids": list(range(i, i + 32)), "labels": list(range(i, i + 32))} for i in range(8)]
res = memfit.train(model, stack, rows, memfit.TrainConfig(max_steps=3, micro_batch=2, lr=1e-2, warmup=0.0))
try:
    check_stack_for_distributed(stack, "FSDP", fsdp_version=1, fsdp_use_orig_params=False)
    refused = ""
except memfit.StackError as exc:
    refused = str(exc)
print("RESULT", {"steps": res.steps, "embed_same": bool(torch.equal(before[0], model.get_input_embeddings().weight)),
                 "head_same": bool(torch.equal(before[1], model.lm_head.weight)), "refused": refused})
""" % TINY


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, str]:
    target = tmp_path_factory.mktemp("plugin_site")
    build = tmp_path_factory.mktemp("plugin_build")
    src = build / "plugin"
    subprocess.run(["cp", "-r", str(REPO / "examples" / "plugin"), str(src)], check=True)  # keep the tree clean
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                    "--quiet", "--target", str(target), str(src)], check=True, timeout=120)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), str(REPO)]), "CUDA_VISIBLE_DEVICES": ""}


def _memfit(env, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "memfit.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_memfit_stacks_lists_the_installed_plugin(installed):
    out = _memfit(installed, "stacks", "bf16+freeze_embeddings")
    assert out.returncode == 0, out.stderr
    assert "freeze_embeddings" in out.stdout.splitlines()[-1] or "freeze_embeddings" in out.stdout
    assert "input embeddings frozen" in out.stdout


def test_memfit_plan_accounts_for_the_plugin_term(installed, tmp_path):
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY))
    out = _memfit(installed, "plan", "--model-config", str(config), "--stack", "freeze_embeddings", "--seq-len", "32",
                  "--cpu-budget-gib", "0.05", "--fresh", "--out", str(tmp_path / "report"), timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    line = next(x for x in out.stdout.splitlines() if x.startswith("frozen_embeddings"))
    assert line.split()[-1] == "freeze_embeddings"  # the term names its owner
    # its gradient and both AdamW moments, fp32: 2048 x 64 x 12 bytes = 1.5 MiB the plan no longer counts
    assert float(line.split()[1]) == pytest.approx(-1.5, abs=0.05)
    [row] = json.loads(next((tmp_path / "report").glob("*.json")).read_text())["results"]
    gib = row["memory_breakdown_gib"]
    assert gib["frozen_embeddings"] * 2**30 == pytest.approx(-2048 * 64 * 12)
    assert gib["total"] == pytest.approx(sum(v for k, v in gib.items() if k != "total" and not k.startswith("host:")))


def test_the_plugin_trains_and_checks_the_launch(installed, tmp_path):
    out = subprocess.run([sys.executable, "-c", TRAIN], env=installed, capture_output=True, text=True, timeout=180,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    result = eval(next(x for x in out.stdout.splitlines() if x.startswith("RESULT"))[len("RESULT "):])
    assert result["steps"] == 3 and result["embed_same"] and not result["head_same"]
    assert "use_orig_params" in result["refused"]
