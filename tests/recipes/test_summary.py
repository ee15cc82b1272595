"""memfit.recipes.summary: the report says what was trained on, how fast, and why the peak differs from the plan."""
from memfit.recipes.summary import data_phrase, memory_text, rate_text


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
