"""The summary's sample answer: a tiny run's answers to the fixed prompt before and after training appear in
results.json and summary.md, equal to memfit's own decode; chat runs ask through the template; an empty prompt or
sharded weights take no sample and say why."""
from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import torch

from _models import tiny_config

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "data"))
from pdf_factory import english_page  # noqa: E402
from test_finetune import _one_thread, tiny_model_dir, tiny_tokenizer  # noqa: E402,F401

from memfit.generation import answer  # noqa: E402
from memfit.recipes.sample_answer import SAMPLE_TOKENS, SampleAnswer  # noqa: E402

MAIN = SimpleNamespace(is_main_process=True, distributed_type="NO")


def test_a_runs_answers_before_and_after_training_are_in_results_and_summary(tmp_path, monkeypatch,
                                                                             tiny_model_dir, tiny_tokenizer):
    from memfit.recipes.finetune import run_finetune
    from memfit.recipes.saved_run import load_base, load_trained, read_run

    monkeypatch.setenv("MEMFIT_CACHE", str(tmp_path / "cache"))
    notes = tmp_path / "notes"
    notes.mkdir()
    for i in range(3):
        (notes / f"note{i}.md").write_text(english_page(seed=i))
    results = run_finetune(sources=[{"kind": "text", "path": str(notes)}], model=str(tiny_model_dir),
                           output_dir=str(tmp_path / "out"), run_name="sample", seq_len=32, micro_batch=2,
                           target_effective_batch=2, max_steps=2, lr=3e-2, eval_context=32, eval_max_tokens=64,
                           sample_prompt="the ocean warms", progress=False, log_with=None)
    sample = results["sample_answer"]
    assert sample["prompt"] == "the ocean warms" and sample["chat"] is False
    assert sample == json.loads((tmp_path / "out" / "sample" / "results.json").read_text())["sample_answer"]
    run = read_run(tmp_path / "out" / "sample")
    for label, model in (("before", load_base(run)), ("after", load_trained(run))):  # the decode memfit generate uses
        assert sample[label] == answer(model, tiny_tokenizer, "the ocean warms", max_new_tokens=SAMPLE_TOKENS)
    summary = (tmp_path / "out" / "sample" / "summary.md").read_text()
    for label in ("before", "after"):
        line = next(row for row in summary.splitlines() if row.startswith(f"| sample answer {label} |"))
        assert " ".join(sample[label].split()) in line
    assert "| sample prompt | the ocean warms (continued as text" in summary


def test_a_chat_run_asks_through_the_template(tiny_tokenizer):
    tokenizer = copy.deepcopy(tiny_tokenizer)
    tokenizer.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<eos>{% endfor %}"
                               "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    torch.manual_seed(0)
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM(tiny_config(vocab_size=len(tokenizer)))
    sample = SampleAnswer("why is the sea warming?", tokenizer, True, MAIN, lambda _: None)
    sample.take(model, "before")
    assert sample.answers["before"] == answer(model, tokenizer, "why is the sea warming?", chat=True,
                                              max_new_tokens=SAMPLE_TOKENS)
    assert sample.record()["chat"] is True


def test_no_sample_for_an_empty_prompt_or_sharded_weights_and_the_record_says_why(tiny_tokenizer):
    for prompt, state, why in (("  ", MAIN, "sample_prompt is empty"),
                               ("hi", SimpleNamespace(is_main_process=True, distributed_type="DistributedType.FSDP"),
                                "sharded by FSDP")):
        sample = SampleAnswer(prompt, tiny_tokenizer, False, state, lambda _: None)
        sample.take(None, "before")  # no model is touched
        assert why in sample.record()["skipped"]
