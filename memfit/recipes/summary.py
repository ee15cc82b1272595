"""summary.md of a fine-tune run: the table a person reads first."""

from __future__ import annotations

from typing import Any

from .quality import quality_rows


def summary_markdown(r: dict[str, Any], data_table: str = "") -> str:
    p, e, mem = r["plan"], r["evaluation"], r["memory"]
    peak = mem["train"].get("peak_gib", mem["train"].get("peak_rss_gib"))
    cap = " (the max_micro_batch cap; memory would allow more)" if p["capped_by_max_micro_batch"] else ""
    rows = [
        ("maximum batch size", f"{r['max_batch_size']} sequences of {p['seq_len']} tokens per process{cap}"),
        ("gradient accumulation steps", r["gradient_accumulation_steps"]),
        ("effective batch size", f"{r['effective_batch_size']} (= {r['max_batch_size']} x "
                                 f"{r['gradient_accumulation_steps']} x {r['num_processes']} processes)"),
        *quality_rows(r),
        ("training", f"{r['train']['steps']} steps, {r['train']['tokens']:,} tokens, {r['tokens_per_s']:,.0f} tokens/s"
                     + (f" (resumed from {r['train']['resumed_from']}: the rate covers only the steps run now)"
                        if r["train"].get("resumed_from") else "")),
        ("memory", f"peak {peak:.2f} GiB ({'allocator' if 'peak_gib' in mem['train'] else 'process RSS'}); planner: "
                   f"{p['peak_gib'] or 0:.2f} GiB at the max of a {p['budget_gib']:.1f} GiB budget"),
        ("device", f"{r['device']} x {r['num_processes']}"),
        ("model / stack", f"{r['model']} / `{r['stack']}`"),
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
    return (f"# memfit fine-tune: {r['model']} on {r['data']['documents']} PDFs\n\n| | |\n|---|---|\n{table}\n\n"
            f"{curves}## Data\n```\n{data_table}\n```\n\n## Stack\n```\n{r['stack_description']}\n```\n")
