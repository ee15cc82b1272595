"""memfit.recipes.summary: the report says what was trained on, how fast, and why the peak differs from the plan."""
from memfit.recipes.summary import data_phrase, memory_text, rate_text, sample_rows, validation_text


def test_the_data_is_named_by_source_kind_not_as_pdfs():
    data = {"documents": 43, "sources": [
        {"kind": "table", "path": "chat.jsonl", "format": "chat"},
        {"kind": "text", "path": "notes", "name": "notes"},
        {"kind": "table", "path": "rows.csv", "format": "text"},
        {"kind": "pdf", "path": "papers"}],
        "per_source": {"chat.jsonl": {"train": 30, "test": 10}, "notes": {"train": 2, "test": 1},
                       "rows.csv": {"train": 4, "test": 1}, "papers": {"train": 1, "test": 1}}}
    assert data_phrase(data) == ("40 conversations (chat.jsonl), 3 text files (notes), 5 rows (rows.csv), "
                                 "2 PDF documents (papers)")


def test_a_run_too_short_to_time_says_so_instead_of_0_tokens_per_s():
    assert "n/a" in rate_text({"tokens_per_s": None, "train": {}})
    assert "n/a" in rate_text({"tokens_per_s": 0.0, "train": {}})
    assert rate_text({"tokens_per_s": 1234.5, "train": {}}) == "1,234 tokens/s"


def test_a_peak_above_the_planners_budget_is_explained():
    r = {"plan": {"probes": [{}], "cache_hit": False, "peak_gib": 0.003, "budget_gib": 0.004},
         "memory": {"train": {"peak_rss_gib": 0.61}}}
    text = memory_text(r)
    assert "above the budget" in text and "process RSS counts the whole process" in text
    fixed = {"plan": {"probes": [], "cache_hit": False, "peak_gib": None, "budget_gib": 0.0},
             "memory": {"train": {"peak_rss_gib": 0.61}}}
    assert "planner skipped" in memory_text(fixed)


def test_the_validation_split_and_the_sample_answers_have_rows_of_their_own():
    validation = {"base": {"perplexity": 40.0}, "final": {"perplexity": 30.0, "tokens": 1200}, "change_pct": -25.0,
                  "scored": "all tokens", "evaluated": "every 5 steps (train.evals)"}
    assert validation_text(validation) == ("40.000 -> 30.000 (-25.0 %) over 1,200 all tokens of the validation "
                                           "documents, evaluated every 5 steps (train.evals); apart from the test "
                                           "documents above")
    rows = dict(sample_rows({"prompt": "The main finding", "chat": False, "max_new_tokens": 32, "greedy": True,
                             "before": "is a\nline | with a pipe", "after": ""}))
    assert rows["sample prompt"] == "The main finding (continued as text; greedy, 32 tokens)"
    assert rows["sample answer before"] == "is a line \\| with a pipe"  # one table cell: one line, pipe escaped
    assert rows["sample answer after"].startswith("(empty")
    assert sample_rows({"skipped": "eval.sample_prompt is empty"}) == [
        ("sample answer", "none (eval.sample_prompt is empty)")]
