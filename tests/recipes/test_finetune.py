"""The climate example's code path end to end on CPU: tiny random Llama, in-process tokenizer, two generated PDFs."""

from __future__ import annotations

import importlib.util
import json
import re
import math
import sys
from pathlib import Path

import pytest

from _models import REPO, tiny_config

sys.path.insert(0, str(Path(__file__).parents[1] / "data"))
from pdf_factory import english_page, write_text_pdf  # noqa: E402

from memfit import Stack  # noqa: E402
from memfit.recipes.run_config import seed_stack  # noqa: E402



@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny matmuls gain nothing from a second thread, and its spin-waiting on a busy 2-core runner costs ~5x."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _example():
    return _load("climate_example", REPO / "examples" / "climate.py")


# the data tests' in-process byte-level BPE tokenizer (a session fixture; pytest collects it from this namespace)
tiny_tokenizer = _load("data_fixtures", Path(__file__).parents[1] / "data" / "conftest.py").tiny_tokenizer


@pytest.fixture
def tiny_model_dir(tmp_path, tiny_tokenizer) -> Path:
    """A tiny random Llama and the tokenizer, saved like a Hub checkpoint."""
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(tiny_config(vocab_size=len(tiny_tokenizer)))
    out = tmp_path / "tiny-llama"
    model.save_pretrained(out)
    tiny_tokenizer.save_pretrained(out)
    return out


@pytest.fixture
def climate_pdfs(tmp_path) -> Path:
    folder = tmp_path / "pdfs"
    folder.mkdir()
    for i, name in enumerate(("ocean.pdf", "land.pdf")):
        write_text_pdf(folder / name, [english_page(seed=10 * i + page) for page in range(4)])
    return folder


def _argv(pdfs: Path, model: Path, out: Path, run: str) -> list[str]:
    return ["--pdf-dir", str(pdfs), "--model", str(model), "--output-dir", str(out), "--run-name", run,
            "--seq-len", "32", "--target-effective-batch", "16", "--max-steps", "3", "--lr", "3e-3",
            "--eval-context", "32", "--eval-max-tokens", "96", "--cpu-budget-gib", "0.004", "--max-micro-batch", "12"]


def test_example_end_to_end_writes_every_result_and_reuses_caches(tmp_path, monkeypatch, tiny_model_dir,
                                                                   climate_pdfs, capsys):
    monkeypatch.setenv("MEMFIT_CACHE", str(tmp_path / "cache"))
    example, out = _example(), tmp_path / "results"
    first = example.main(_argv(climate_pdfs, tiny_model_dir, out, "first"))
    run = out / "first"
    saved = json.loads((run / "results.json").read_text())
    assert saved == json.loads(json.dumps(first, default=str))
    # what eval, merge and resume verify later: the record's checksum, the base weights' content, the adapter's files
    from memfit.core.integrity import checksum_problem, manifest_problem
    from memfit.recipes.saved_run import base_fingerprint

    assert checksum_problem(saved) is None and saved["base_fingerprint"] == base_fingerprint(str(tiny_model_dir))
    assert saved["base_fingerprint"].startswith("sha256:") and manifest_problem(run / "adapter") is None

    # the headline numbers, and how they relate
    plan, train, ev = saved["plan"], saved["train"], saved["evaluation"]
    assert 1 <= saved["max_batch_size"] == plan["max_micro_batch"] < 12  # memory, not the cap, decided
    assert plan["capped_by_max_micro_batch"] is False and not plan["cache_hit"]
    fits = {p["micro_batch"]: p["fits"] for p in plan["probes"]}
    assert fits[saved["max_batch_size"]] and fits[saved["max_batch_size"] + 1] is False  # exact boundary
    k = saved["gradient_accumulation_steps"]
    assert k == math.ceil(16 / saved["max_batch_size"]) == train["grad_accum"]
    # trained at the smallest micro-batch reaching 16 in k steps (max 9: 8 x 2 = 16, not 9 x 2 = 18)
    micro = plan["micro_batch"]
    assert micro == math.ceil(16 / k) <= saved["max_batch_size"]
    assert 16 <= saved["effective_batch_size"] == micro * k * saved["num_processes"] < 16 + k
    assert saved["num_processes"] == 1 and saved["device"] == "cpu"
    for key in ("original_perplexity", "base_perplexity", "final_perplexity", "base_bits_per_byte",
                "final_bits_per_byte"):
        assert math.isfinite(saved[key]) and saved[key] > 0
    # an fp32 LoRA stack trains on the original weights: the original is the base, the headline is against it
    assert saved["original_perplexity"] == saved["base_perplexity"] and saved["precision_cost_pct"] == 0
    assert saved["perplexity_change_pct"] == pytest.approx(
        100 * (saved["final_perplexity"] / saved["original_perplexity"] - 1))
    assert saved["regression"] is False
    assert saved["final_perplexity"] < saved["base_perplexity"]  # 3 steps at lr 3e-3 on repetitive prose
    assert saved["tokens_per_s"] > 0 and train["steps"] == 3 and len(train["losses"]) == 3
    assert train["tokens"] > 0 and train["micro_batch"] == plan["micro_batch"]

    # memory, device, versions, data, stack, evaluation sample
    assert saved["memory"]["train"]["peak_rss_gib"] > 0 and saved["memory"]["planned_peak_gib"] > 0
    assert saved["memory"]["budget_gib"] == pytest.approx(0.004) and saved["memory"]["breakdown_gib"]
    assert {"python", "torch", "transformers", "peft", "accelerate"} <= set(saved["versions"])
    data = saved["data"]
    assert data["documents"] == 2 and data["skipped"] == [] and data["per_source"] == {str(climate_pdfs): {
        "train": 1, "test": 1}}
    assert [(s["kind"], s["path"]) for s in data["sources"]] == [("pdf", str(climate_pdfs))]  # --pdf-dir, as a source
    assert set(data["split"]) == {"train", "test"} and data["split"]["train"]["blocks"] > 0
    assert data["test_documents"] and all(name.startswith(f"{climate_pdfs}::") and name.endswith(".pdf")
                                          for name in data["test_documents"])
    assert saved["stack"] == Stack.from_spec(seed_stack("cpu").format(batch=16)).spec
    assert "LoRA" in saved["stack_description"] and "checkpoint" not in saved["stack_description"]
    assert ev["sampled"] and ev["pieces"] == 3 and ev["piece_tokens"] == 32 and ev["context_length"] == 32
    assert ev["scored_tokens"] == 3 * 31 == ev["base"]["tokens"] == ev["final"]["tokens"]
    assert ev["scored_bytes"] > 0 and "note" in ev
    assert set(saved["seconds"]) == {"data_s", "load_s", "plan_s", "base_eval_s", "train_s", "final_eval_s",
                                     "total_s"}
    assert saved["config"]["data"]["seq_len"] == 32 and saved["config"]["run_name"] == "first"
    assert saved["random_init"] is False and saved["model"] == str(tiny_model_dir)

    # the adapter and the Markdown summary
    assert (Path(saved["adapter_dir"]) / "adapter_config.json").exists()
    assert any(Path(saved["adapter_dir"]).glob("adapter_model.safetensors"))
    summary = (run / "summary.md").read_text()
    for row in ("maximum batch size", "gradient accumulation steps", "effective batch size", "fine-tuned",
                "base as trained", "original model (full precision)", "against the original model", "memory", "tokens/s", "device", "versions"):
        assert f"| {row}" in summary or row in summary
    assert f"| maximum batch size | {saved['max_batch_size']} " in summary
    assert f"| gradient accumulation steps | {k} |" in summary
    assert f"{saved['final_perplexity']:.3f}" in summary
    assert summary in capsys.readouterr().out  # the example prints it

    # a second run reads the extracted text and the plan from the caches, and trains the same way
    from memfit.data.pdf.text_cache import TextCache

    cached, load = [], TextCache.load
    monkeypatch.setattr(TextCache, "load", lambda cache, sha256: cached.append(load(cache, sha256)) or cached[-1])
    second = example.main(_argv(climate_pdfs, tiny_model_dir, out, "second"))
    assert len(cached) == 2 and all(entry is not None for entry in cached)  # both PDFs' text, not pypdf again
    assert second["data"]["sha256"] == data["sha256"]
    assert second["plan"]["cache_hit"] is True and second["max_batch_size"] == saved["max_batch_size"]
    assert second["base_perplexity"] == pytest.approx(saved["base_perplexity"], rel=1e-6)
    assert second["final_perplexity"] == pytest.approx(saved["final_perplexity"], rel=1e-4)

    # the same run again continues from its final checkpoint instead of training on top of the trained adapter
    again = example.main(_argv(climate_pdfs, tiny_model_dir, out, "first"))
    assert again["train"]["resumed_from"] and again["train"]["steps"] == 3
    assert again["tokens_per_s"] == saved["tokens_per_s"] > 0  # the rerun trained nothing: the rate is kept
    assert again["final_perplexity"] == pytest.approx(saved["final_perplexity"], rel=1e-5)
    assert "resumed from" in (run / "summary.md").read_text()


def test_empty_pdf_dir_fails_with_instructions(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MEMFIT_CACHE", str(tmp_path / "cache"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as exit_info:  # a user error: the message and exit code 2, no traceback
        _example().main(["--pdf-dir", str(tmp_path / "empty"), "--output-dir", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert re.search(r"(?m)^error: no \.pdf files in .*empty(.|\n)*--pdf-dir", capsys.readouterr().err)
    assert not list((tmp_path / "out").rglob("results.json"))


@pytest.mark.slow
def test_example_under_accelerate_launch_with_two_cpu_processes(tmp_path, tiny_model_dir, climate_pdfs):
    """The real launcher: both ranks plan the same micro-batch, accumulation counts both processes, rank 0 writes."""
    import os
    import subprocess

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MEMFIT_CACHE": str(tmp_path / "cache"),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("ACCELERATE_USE_CPU", None)
    out = tmp_path / "results"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", "launch_configs/cpu_2proc.yaml",
           "examples/climate.py", *_argv(climate_pdfs, tiny_model_dir, out, "ddp")]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    saved = json.loads((out / "ddp" / "results.json").read_text())
    biggest, micro, k = saved["max_batch_size"], saved["plan"]["micro_batch"], saved["gradient_accumulation_steps"]
    assert saved["num_processes"] == saved["plan"]["num_processes"] == 2
    assert k == math.ceil(16 / (biggest * 2)) and micro == math.ceil(16 / (k * 2)) <= biggest
    assert saved["effective_batch_size"] == micro * k * 2 == saved["train"]["micro_batch"] * k * 2
    assert saved["final_perplexity"] < saved["base_perplexity"]
    assert done.stdout.count("| maximum batch size |") == 1  # one summary, from rank 0


def test_sources_field_trains_on_text_files_and_records_the_split(tmp_path, monkeypatch, tiny_model_dir):
    from memfit.recipes.finetune import FinetuneConfig, run_finetune

    monkeypatch.setenv("MEMFIT_CACHE", str(tmp_path / "cache"))
    notes = tmp_path / "notes"
    notes.mkdir()
    for i in range(3):
        (notes / f"note{i}.md").write_text("\n".join(english_page(seed=i) for _ in range(2)))
    cfg = FinetuneConfig.model_validate({"sources": [{"kind": "text", "path": str(notes), "name": "notes"}]})
    results = run_finetune(cfg, model=str(tiny_model_dir), output_dir=str(tmp_path / "out"), run_name="text",
                           seq_len=32, target_effective_batch=4, max_steps=2, eval_context=32, eval_max_tokens=64,
                           cpu_budget_gib=0.004, max_micro_batch=4, progress=False)
    data = results["data"]
    assert data["documents"] == 3 and data["per_source"] == {"notes": {"train": 2, "test": 1}}
    assert sorted(data["test_sha256"]) == sorted(data["test_documents"])
    assert len(data["test_documents"]) == 1 and data["test_documents"][0].startswith("notes::note")
    assert results["train"]["steps"] == 2 and results["config"]["data"]["sources"][0]["kind"] == "text"


def test_a_fixed_micro_batch_skips_the_planner_and_the_report_says_what_it_trained_on(tmp_path, monkeypatch,
                                                                                        tiny_model_dir):
    """The phases end to end with the knobs: plan.micro_batch reaches the loop without a probe; a 1-step run has no
    rate to report ("n/a", not 0 tokens/s); the summary names text files, not PDFs, and the model's class."""
    from memfit.recipes.finetune import FinetuneConfig, run_finetune

    monkeypatch.setenv("MEMFIT_CACHE", str(tmp_path / "cache"))
    notes = tmp_path / "notes"
    notes.mkdir()
    for i in range(3):
        (notes / f"note{i}.md").write_text("\n".join(english_page(seed=i) for _ in range(2)))
    cfg = FinetuneConfig.model_validate({"data": {"sources": [{"kind": "text", "path": str(notes), "name": "notes"}],
                                                  "seq_len": 32},
                                         "plan": {"micro_batch": 2}, "train": {"max_steps": 1, "progress": False}})
    results = run_finetune(cfg, model=str(tiny_model_dir), output_dir=str(tmp_path / "out"), run_name="fixed",
                           target_effective_batch=4, eval_context=32, eval_max_tokens=64, log_with=None)
    assert results["plan"]["probes"] == [] and results["train"]["micro_batch"] == 2
    assert results["gradient_accumulation_steps"] == 2 and results["tokens_per_s"] is None
    assert results["model_class"] == "LlamaForCausalLM" and results["model_family"] == "llama"
    summary = (tmp_path / "out" / "fixed" / "summary.md").read_text()
    assert "on 3 text files (notes)" in summary and "tokens/s n/a" in summary and "planner skipped" in summary


def test_a_chat_run_scores_the_answer_tokens_it_trained_on(tmp_path, monkeypatch, capsys, tiny_tokenizer):
    """Chat data trains on the assistant's tokens (train_on_inputs false): the run's held-out numbers score those
    tokens, the all-token perplexity is recorded beside them, the summary says what the loss counted, and `memfit
    eval RUN` reproduces both numbers."""
    import copy

    import torch
    from transformers import LlamaForCausalLM

    from memfit.recipes.finetune import run_finetune

    monkeypatch.setenv("MEMFIT_CACHE", str(tmp_path / "cache"))
    tokenizer = copy.deepcopy(tiny_tokenizer)
    tokenizer.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<eos>\n{% endfor %}")
    model_dir = tmp_path / "tiny-chat"
    torch.manual_seed(0)
    LlamaForCausalLM(tiny_config(vocab_size=len(tokenizer))).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    rows = [{"messages": [{"role": "user", "content": f"Question {i} about the ocean heat content?"},
                          {"role": "assistant", "content": english_page(seed=i)[:90]}]} for i in range(12)]
    (tmp_path / "chat.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    results = run_finetune(sources=[{"kind": "table", "path": str(tmp_path / "chat.jsonl")}], model=str(model_dir),
                           output_dir=str(tmp_path / "out"), run_name="chat", seq_len=128, target_effective_batch=4,
                           max_steps=1, eval_context=128, eval_max_tokens=0, cpu_budget_gib=0.01, max_micro_batch=4,
                           log_with=None, progress=False)
    ev = results["evaluation"]
    assert results["data"]["loss_tokens"] == "assistant" and ev["scored"] == "answer tokens"
    final, every = ev["final"], ev["all_tokens"]["final"]
    assert 0 < final["tokens"] < every["tokens"] and final["bits_per_byte"] is None
    assert results["final_perplexity"] == pytest.approx(final["perplexity"])
    assert "assistant" in (tmp_path / "out" / "chat" / "summary.md").read_text()
    from memfit.cli import main

    capsys.readouterr()
    assert main(["eval", str(tmp_path / "out" / "chat")]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["tokens_scored"] == "answer tokens" and scored["tokens"] == final["tokens"]
    assert scored["perplexity"] == pytest.approx(final["perplexity"], rel=1e-5)
    assert scored["all_tokens"]["perplexity"] == pytest.approx(every["perplexity"], rel=1e-5)


def test_unpacked_blocks_and_a_validation_split(tmp_path, monkeypatch, tiny_model_dir):
    """packing false: one document per block, padded and masked (the data table says so); validation_fraction:
    documents taken from training (never the test ones), scored before, every eval_every steps and after, and
    reported apart from the test perplexity (results.json, summary, the curve)."""
    from memfit.recipes.finetune import FinetuneConfig, run_finetune

    monkeypatch.setenv("MEMFIT_CACHE", str(tmp_path / "cache"))
    notes = tmp_path / "notes"
    notes.mkdir()
    for i in range(5):
        (notes / f"note{i}.md").write_text(english_page(seed=i)[:150 + 40 * i])
    cfg = FinetuneConfig.model_validate({"sources": [{"kind": "text", "path": str(notes), "name": "notes"}],
                                         "packing": False, "validation_fraction": 0.2, "test_fraction": 0.2})
    results = run_finetune(cfg, model=str(tiny_model_dir), output_dir=str(tmp_path / "out"), run_name="unpacked",
                           seq_len=64, micro_batch=2, target_effective_batch=2, max_steps=2, eval_every=1,
                           eval_context=32, eval_max_tokens=64, progress=False, log_with=None)
    data = results["data"]
    assert data["packed"] is False and data["per_source"]["notes"] == {"train": 3, "validation": 1, "test": 1}
    assert not set(data["validation_documents"]) & set(data["test_documents"])
    # every train document gets blocks of its own: at least one block per document, padding in the last
    assert data["split"]["train"]["blocks"] >= data["split"]["train"]["documents"] == 3
    validation = results["validation"]
    assert validation["evaluated"] == "every 1 step (train.evals)"
    assert [e["step"] for e in results["train"]["evals"]] == [1, 2]
    assert validation["final"] == results["train"]["evals"][-1]  # the last periodic evaluation, not scored twice
    assert validation["base"]["perplexity"] != results["evaluation"]["base"]["perplexity"]  # other documents
    summary = (tmp_path / "out" / "unpacked" / "summary.md").read_text()
    assert "| validation perplexity |" in summary and "train blocks are not packed" in summary
    assert results["config"]["data"]["packing"] is False
    # a different layout of the same data is another run: the identity (and the default folder name) says so
    assert {"packing", "validation_fraction"} <= set(FinetuneConfig.model_validate(results["config"]).identity())
    assert not {"packing", "validation_fraction"} & set(FinetuneConfig().identity())
