"""The trained weights' folder travels: the tokenizer is in it, adapter_config.json names a base that loads offline
(absolute folder, the embedded model's converted copy, a Hub id as given), every file is readable like any other
(mode from the umask, not transformers' private 0600)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import LlamaForCausalLM

from _models import tiny_config
from memfit.core.stack import Stack
from memfit.models import load_model
from memfit.training.loop import make_accelerator
from memfit.training.saving import loadable_base, save_trained

REPO = Path(__file__).resolve().parents[2]


def _data_fixtures():
    import importlib.util

    sys.path.insert(0, str(REPO / "tests" / "data"))  # its conftest imports pdf_factory
    spec = importlib.util.spec_from_file_location("data_fixtures", REPO / "tests" / "data" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tiny_tokenizer = _data_fixtures().tiny_tokenizer  # the data tests' session fixture: a BPE trained in milliseconds


@pytest.fixture
def base_folder(tmp_path, tiny_tokenizer) -> Path:  # noqa: F811
    torch.manual_seed(0)
    out = tmp_path / "tiny-llama"
    LlamaForCausalLM(tiny_config(vocab_size=len(tiny_tokenizer))).save_pretrained(out)
    tiny_tokenizer.save_pretrained(out)
    return out


def test_an_adapter_folder_loads_offline_from_anywhere_with_its_tokenizer(base_folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    stack = Stack.from_spec("lora")
    model = load_model("tiny-llama", stack)  # a folder named relative to the current one, as a user may
    adapter = tmp_path / "run" / "adapter"
    save_trained(model, make_accelerator(stack, 1, project_dir=str(tmp_path / "run")), adapter)

    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(base_folder)  # absolute
    assert (adapter / "tokenizer.json").is_file()
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in adapter.iterdir()}
    umask_mode = oct((tmp_path / "tiny-llama").stat().st_mode & 0o666)
    assert set(modes.values()) == {umask_mode}, modes

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    probe = ("import sys\nfrom peft import AutoPeftModelForCausalLM\nfrom transformers import AutoTokenizer\n"
             "m = AutoPeftModelForCausalLM.from_pretrained(sys.argv[1])\n"
             "t = AutoTokenizer.from_pretrained(sys.argv[1])\n"
             "print('loaded', type(m).__name__, len(t('hello ocean')['input_ids']) > 0)\n")
    done = subprocess.run([sys.executable, "-c", probe, str(adapter)], cwd=elsewhere, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                                            "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "loaded PeftModelForCausalLM True" in done.stdout


def test_the_base_is_named_so_from_pretrained_finds_it(base_folder, tmp_path, monkeypatch):
    import memfit.models as models

    monkeypatch.setattr(models, "embedded_model_dir", lambda: base_folder)
    assert loadable_base("smollm2-135m") == str(base_folder)  # the converted cache copy of the embedded model
    assert loadable_base("HuggingFaceTB/SmolLM2-135M") == "HuggingFaceTB/SmolLM2-135M"  # a Hub id: the Hub cache
    assert loadable_base("llama-3.2-1b") == "llama-3.2-1b"  # an architecture without weights: nothing to point at
    monkeypatch.chdir(base_folder.parent)
    assert loadable_base("tiny-llama") == str(base_folder)


def test_a_full_fine_tune_folder_also_holds_the_tokenizer(base_folder, tmp_path):
    stack = Stack.from_spec("ga1")
    model = load_model(str(base_folder), stack)
    out = tmp_path / "full"
    save_trained(model, make_accelerator(stack, 1, project_dir=str(tmp_path)), out)
    assert (out / "tokenizer.json").is_file() and (out / "model.safetensors").stat().st_mode & 0o777 != 0o600
