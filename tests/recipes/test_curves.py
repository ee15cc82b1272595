"""A run's curves.png (loss, evaluation perplexity, memory over steps), its link in summary.md, and evaluation in
TensorBoard: the periodic points and the base/final perplexities, read back from the event files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from test_finetune import _one_thread, climate_pdfs, tiny_model_dir, tiny_tokenizer  # noqa: E402,F401

from memfit.recipes.curves import CURVES_FILE, eval_points, write_curves  # noqa: E402


def _results(losses, evals=(), memory=()) -> dict:
    return {"model": "tiny", "stack": "lora", "memory": {"train": {"peak_rss_gib": 0.5}},
            "train": {"steps": len(losses), "losses": list(losses), "evals": list(evals),
                      "memory_curve": list(memory)},
            "evaluation": {"base": {"perplexity": 40.0}, "final": {"perplexity": 30.0}}}


def test_curves_png_from_results_and_nothing_without_steps(tmp_path):
    r = _results([3.0, 2.5, float("nan"), 2.0], evals=[{"step": 2, "perplexity": 35.0}],
                 memory=[{"step": s, "peak_gib": 0.5} for s in (1, 2, 3, 4)])
    assert eval_points(r) == [(0, 40.0), (2, 35.0), (4, 30.0)]  # base at step 0, periodic, final at the last step
    path = write_curves(tmp_path, r)
    assert path == tmp_path / CURVES_FILE and Image.open(path).size[1] > Image.open(path).size[0] / 2  # 3 panels
    assert not list(tmp_path.glob("*.tmp*"))  # written aside and renamed
    assert write_curves(tmp_path / "empty", _results([])) is None


def _scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, list[tuple[int, float]]] = {}
    for events in run_dir.rglob("events.out.tfevents*"):
        acc = EventAccumulator(str(events.parent))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return out


def test_run_writes_curves_linked_from_summary_and_logs_evaluation_to_tensorboard(
        tmp_path, monkeypatch, tiny_model_dir, climate_pdfs):  # noqa: F811
    from memfit.recipes.finetune import FinetuneConfig, run_finetune

    monkeypatch.setenv("MEMFIT_CACHE", str(tmp_path / "cache"))
    cfg = FinetuneConfig(pdf_dir=str(climate_pdfs), model=str(tiny_model_dir), output_dir=str(tmp_path / "out"),
                         run_name="curves", seq_len=32, target_effective_batch=4, max_steps=2, lr=3e-3,
                         eval_context=32, eval_max_tokens=64, cpu_budget_gib=0.004, max_micro_batch=4,
                         progress=False, eval_every=1, log_with="tensorboard")
    results = run_finetune(cfg)
    run_dir = tmp_path / "out" / "curves"
    assert (run_dir / CURVES_FILE).is_file() and results["curves_png"] == CURVES_FILE
    assert f"]({CURVES_FILE})" in (run_dir / "summary.md").read_text()
    saved = json.loads((run_dir / "results.json").read_text())
    assert [m["step"] for m in saved["train"]["memory_curve"]] == [1, 2]
    assert [e["step"] for e in saved["train"]["evals"]] == [1, 2]

    scalars = _scalars(run_dir)
    base, final = results["evaluation"]["base"]["perplexity"], results["evaluation"]["final"]["perplexity"]
    assert [s for s, _ in scalars["loss"]] == [1, 2]
    assert sorted(s for s, _ in scalars["eval/perplexity"]) == [0, 1, 2, 2]  # base, periodic x2, final
    assert scalars["eval/base_perplexity"] == [(0, pytest.approx(base, rel=1e-5))]
    assert scalars["eval/final_perplexity"] == [(2, pytest.approx(final, rel=1e-5))]
    assert "eval/bits_per_byte" in scalars



def test_with_a_validation_split_the_curve_is_the_validation_perplexity():
    """The periodic evaluations score the validation documents: the curve starts and ends on that split, never on
    the test documents' numbers."""
    r = _results([3.0, 2.5], evals=[{"step": 1, "perplexity": 36.0}])
    r["validation"] = {"base": {"perplexity": 41.0}, "final": {"perplexity": 33.0}}
    assert eval_points(r) == [(0, 41.0), (1, 36.0), (2, 33.0)]
