"""`memfit train` then `memfit eval RUN` per family, end to end through the CLI: saved (random) weights of the
family's own class, two LoRA steps, and `memfit eval` reproduces the perplexity the run recorded in results.json
from the saved adapter on the recorded test documents."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from memfit.cli import main
from _families import CLASSES, FAMILY_TYPES, family_model


def _recipe(folder: Path, notes: Path, weights: Path, run_name: str) -> Path:
    values = dict(sources=[{"kind": "text", "path": str(notes), "name": "notes"}], model=str(weights),
                  stack="lora:targets=all-linear", output_dir=str(folder / "runs"), run_name=run_name, seq_len=32,
                  micro_batch=2, target_effective_batch=4, max_steps=2, lr=1e-1, eval_context=32, eval_max_tokens=64,
                  progress=False, log_with=None)
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.mark.parametrize("model_type", FAMILY_TYPES)
def test_memfit_eval_reproduces_the_runs_perplexity(tmp_path, monkeypatch, capsys, tiny_tokenizer,
                                                      notes, model_type):
    monkeypatch.setenv("MEMFIT_CACHE", str(tmp_path / "cache"))
    weights = tmp_path / model_type  # "real" weights: a saved checkpoint with its tokenizer, as from the Hub
    # room above the tokenizer's 400 ids: loaded beside a qwen2 config it becomes Qwen2's class, which adds a token
    family_model(model_type, seed=3, vocab_size=len(tiny_tokenizer) + 16).save_pretrained(weights)
    tiny_tokenizer.save_pretrained(weights)
    assert main(["train", str(_recipe(tmp_path, notes, weights, model_type))]) == 0
    run = tmp_path / "runs" / model_type
    recorded = json.loads((run / "results.json").read_text())
    assert recorded["model_class"] == CLASSES[model_type] and recorded["train"]["steps"] == 2
    base, final = recorded["base_perplexity"], recorded["final_perplexity"]
    assert abs(final - base) > 1e-4 * base  # 10x the tolerance below: reproducing the number needs the adapter
    capsys.readouterr()
    assert main(["eval", str(run)]) == 0
    scored = json.loads(capsys.readouterr().out)  # stdout is the JSON alone
    assert scored["scored"] == "adapter" and scored["tokens"] == recorded["evaluation"]["scored_tokens"]
    assert scored["perplexity"] == pytest.approx(final, rel=1e-5)
