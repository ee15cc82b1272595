"""summary.md of a fine-tune run: the table a person reads first. Every line says what was measured, on what."""

from __future__ import annotations

from typing import Any

from .quality import quality_rows

# what one document of a source is, by kind and row format: a summary says "40 conversations", not "40 PDFs"
UNITS = {"pdf": "PDF documents", "text": "text files", "text-rows": "rows", "chat": "conversations",
         "prompt_completion": "prompt/completion pairs"}


def data_phrase(data: dict[str, Any]) -> str:
    """The documents of each source kind ('40 conversations (chat.jsonl), 3 text files (notes)')."""
    parts = []
    for source in data.get("sources", []):
        label = source.get("name") or source.get("path") or source.get("id", "")
        counts = data.get("per_source", {}).get(label, {})
        kind = source.get("kind")
        unit = (source.get("format", "text") if kind in ("table", "saved", "hub") else kind)
        unit = UNITS.get("text-rows" if unit == "text" and kind not in ("text", "pdf") else unit, "documents")
        parts.append(f"{sum(counts.values())} {unit} ({label})")
    return ", ".join(parts) or f"{data['documents']} documents"


def rate_text(r: dict[str, Any]) -> str:
    """Tokens/s from the steps timed; n/a when too few steps ran to time one after the warm-up step."""
    rate = r.get("tokens_per_s")
    if not rate:
        return "tokens/s n/a (the first step is warm-up: a rate needs at least 2 steps)"
    resumed = r["train"].get("resumed_from")
    return f"{rate:,.0f} tokens/s" + (f" (resumed from {resumed}: the rate covers only the steps run now)"
                                      if resumed else "")


def memory_text(r: dict[str, Any]) -> str:
    """The measured peak beside the planner's number, and why they differ."""
    p, mem = r["plan"], r["memory"]
    allocator = "peak_gib" in mem["train"]
    peak = mem["train"].get("peak_gib", mem["train"].get("peak_rss_gib"))
    if not p.get("probes") and not p.get("cache_hit"):
        return f"peak {peak:.2f} GiB ({'allocator' if allocator else 'process RSS'}); planner skipped (fixed micro-batch)"
    why = ("the allocator's peak also holds evaluation and the optimizer's first step" if allocator else
           "process RSS counts the whole process (Python, libraries, tokenizer, data, evaluation); the planner's "
           "budget models only the training step's tensors (weights, gradients, optimizer state, activations)")
    over = " - above the budget: " if p["budget_gib"] and peak > p["budget_gib"] else "; "
    return (f"peak {peak:.2f} GiB ({'allocator' if allocator else 'process RSS'}); planner: {p['peak_gib'] or 0:.2f} "
            f"GiB at the max of a {p['budget_gib']:.1f} GiB budget{over}{why}")


def validation_text(v: dict[str, Any]) -> str:
    """The validation split's perplexity (documents held out of training, not the test documents)."""
    change = f" ({v['change_pct']:+.1f} %)" if v.get("change_pct") is not None else ""
    return (f"{v['base']['perplexity']:.3f} -> {v['final']['perplexity']:.3f}{change} over "
            f"{v['final']['tokens']:,} {v['scored']} of the validation documents, evaluated {v['evaluated']}; "
            "apart from the test documents above")


def table_cell(text: str) -> str:
    """Free text as one markdown table cell: one line, pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|") or "(empty: the model ended its answer at once)"


def sample_rows(s: dict[str, Any]) -> list[tuple[str, str]]:
    """The fixed prompt and the model's answers before and after training, each on one line of the table."""
    if not s or "skipped" in s:
        return [("sample answer", f"none ({s['skipped']})")] if s else []
    asked = "asked as a chat turn" if s["chat"] else "continued as text"
    return [("sample prompt", f"{table_cell(s['prompt'])} ({asked}; greedy, {s['max_new_tokens']} tokens)"),
            ("sample answer before", table_cell(s.get("before", ""))),
            ("sample answer after", table_cell(s.get("after", "")))]


def summary_markdown(r: dict[str, Any], data_table: str = "") -> str:
    p, e = r["plan"], r["evaluation"]
    cap = " (the max_micro_batch cap; memory would allow more)" if p["capped_by_max_micro_batch"] else ""
    model = r["model"] + (f" ({r['model_class']}, {r['model_family']}, attention {r.get('attention', 'sdpa')})"
                          if r.get("model_class") else "")
    rows = [
        ("maximum batch size", f"{r['max_batch_size']} sequences of {p['seq_len']} tokens per process{cap}"),
        ("gradient accumulation steps", r["gradient_accumulation_steps"]),
        ("effective batch size", f"{r['effective_batch_size']} (= {r['max_batch_size']} x "
                                 f"{r['gradient_accumulation_steps']} x {r['num_processes']} processes)"),
        *quality_rows(r),
        *([("validation perplexity", validation_text(r["validation"]))] if r.get("validation") else []),
        *sample_rows(r.get("sample_answer")),
        ("training", f"{r['train']['steps']} steps, {r['train']['tokens']:,} tokens, {rate_text(r)}"),
        ("memory", memory_text(r)),
        ("device", f"{r['device']} x {r['num_processes']}"),
        ("model / stack", f"{model} / `{r['stack']}`"),
        ("evaluation", e.get("note") or f"all {e['scored_tokens']:,} test tokens"),
        ("planner", f"{p['probe_count']} probes, {p['search_seconds']:.0f} s{' (cached)' if p['cache_hit'] else ''}; "
                    f"analytic prediction {p['predicted_max']}"),
        ("wall time", ", ".join(f"{k[:-2]} {v:.0f} s" for k, v in r["seconds"].items())),
        ("versions", ", ".join(f"{k} {v}" for k, v in r["versions"].items())),
    ]
    if r["regression"]:  # said plainly: a run that made the model worse must not read like a result
        rows.insert(0, ("WARNING", f"the fine-tuned model is {r['perplexity_change_pct']:.1f} % WORSE than the original "
                                   "model: lower lr or train longer before using this adapter"))
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    # the picture next to the numbers it is drawn from (memfit.recipes.curves); relative, so the folder can move
    curves = (f"## Curves\n![training loss, evaluation perplexity and memory over steps]({r['curves_png']})\n\n"
              if r.get("curves_png") else "")
    # what was left out of training and why (duplicates name the copy kept): a report that hides it reads as complete
    skipped = r["data"].get("skipped") or []
    left_out = (f"\nSkipped input ({len(skipped)}):\n" + "\n".join(f"- {line}" for line in skipped) + "\n"
                if skipped else "")
    return (f"# memfit fine-tune: {r['model']} on {data_phrase(r['data'])}\n\n| | |\n|---|---|\n{table}\n\n"
            f"{curves}## Data\n```\n{data_table}\n```\n{left_out}\n## Stack\n```\n{r['stack_description']}\n```\n")
