"""stack_choice: a stack's accumulation target is replaced, nothing else; a device's default effective batch larger
than a small corpus is fitted to it (with a note), a value the user chose is refused, and the run records what it
trained at."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from memfit import Stack
from memfit.core.errors import ConfigError
from memfit.core.protocol import effective_batch_target
from memfit.recipes.run_config import FinetuneConfig
from memfit.recipes.stack_choice import with_effective_batch

sys.path.insert(0, str(Path(__file__).parents[1] / "data"))
sys.path.insert(0, str(Path(__file__).parent))
from pdf_factory import english_page  # noqa: E402
from test_finetune import tiny_model_dir, tiny_tokenizer  # noqa: E402,F401


def test_with_effective_batch_changes_only_the_accumulation_target():
    stack = Stack.from_spec("lora:r=4+cce+ga:effective_batch=32")
    fitted = with_effective_batch(stack, 7)
    assert effective_batch_target(fitted) == 7 and effective_batch_target(stack) == 32
    assert fitted.spec == stack.spec.replace("effective_batch=32", "effective_batch=7")
    fixed = Stack.from_spec("lora+ga4")  # fixed steps: no target to change
    assert with_effective_batch(fixed, 7).spec == fixed.spec


@pytest.mark.parametrize("settings, default", [
    ({}, True),  # the device's seed stack with the device's target
    ({"stack": "lora"}, True),  # 'ga' added with the device's target
    ({"target_effective_batch": 8}, False),
    ({"stack": "lora+ga:effective_batch=8"}, False),
])
def test_the_resolved_config_knows_whether_the_effective_batch_is_the_devices_default(settings, default):
    resolved = FinetuneConfig.model_validate(settings).resolved("cpu")
    assert resolved.effective_batch_is_default is default
    assert resolved.stack_names_effective_batch is ("effective_batch" in settings.get("stack", ""))


def _notes(tmp_path: Path) -> dict:
    notes = tmp_path / "notes"
    notes.mkdir()
    for i in range(3):  # two short training documents: fewer blocks of 32 tokens than the CPU default of 8
        (notes / f"note{i}.md").write_text(english_page(seed=i, lines=2))
    return {"sources": [{"kind": "text", "path": str(notes), "name": "notes"}]}


def test_the_default_effective_batch_is_fitted_to_a_small_corpus_and_a_chosen_one_refused(tmp_path, monkeypatch,
                                                                                          tiny_model_dir, caplog):
    from memfit.recipes.finetune import run_finetune

    monkeypatch.setenv("MEMFIT_CACHE", str(tmp_path / "cache"))
    common = dict(model=str(tiny_model_dir), output_dir=str(tmp_path / "out"), seq_len=32, max_steps=1,
                  eval_context=32, eval_max_tokens=64, micro_batch=1, progress=False, log_with=None)
    cfg = FinetuneConfig.model_validate(_notes(tmp_path))
    with caplog.at_level("INFO", logger="memfit"):
        results = run_finetune(cfg, run_name="fitted", **common)
    blocks = results["data"]["split"]["train"]["blocks"]
    assert blocks < 8 and results["effective_batch_size"] == max(1, blocks // 4)
    assert results["config"]["plan"]["target_effective_batch"] == 8  # what was asked; the run says what it did
    assert f"the device's default effective batch 8 is more than the {blocks} training blocks" in caplog.text
    with pytest.raises(ConfigError, match=r"--target-effective-batch 8 is larger than the"):
        run_finetune(cfg, run_name="chosen", target_effective_batch=8, **common)
    assert not (tmp_path / "out" / "chosen").exists()
