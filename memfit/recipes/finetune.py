"""The climate job as one library call: PDFs -> document split -> model + stack -> planned micro-batch -> training
-> perplexity before and after -> `<output_dir>/<run>/results.json`, `summary.md` and the adapter.

    from memfit.recipes.finetune import FinetuneConfig, run_finetune
    results = run_finetune(FinetuneConfig(pdf_dir="papers/", max_steps=50))

Settings left at None take a device default (`DEVICE_DEFAULTS`). On CUDA the default stack is the seed's:
LoRA r8 on q/k/v/o + 4-bit NF4 double-quant + bf16 + checkpointing + accumulation + 8-bit AdamW. On CPU it is
fp32 LoRA + checkpointing + accumulation without bitsandbytes: its CPU kernels are slow, and 4-bit weights or 8-bit
moments save ~0.4 GB for a 135M model on a host with tens of GB, so they would only cost time. The CPU budget is
sized to finish in minutes on 2 cores (short run, capped micro-batch, an evenly spaced sample of the test tokens).
Works under `accelerate launch`: every rank plans (the planner agrees on the minimum), one Accelerator serves
training and evaluation, and only the main process writes files.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

from ..data import DataError, build_datasets, extract_pdfs
from ..launch.distributed import check_launch, partial_state
from ..evaluation import perplexity
from ..training.loop import TrainConfig, make_accelerator, train
from ..models import load_model, load_tokenizer
from ..plan.planner import plan, versions
from ..plan.probe import SimulatedMeter
from ..core.stack import Stack
from ..runtime import configure_runtime
from ..strategies.gradient_accumulation import GradientAccumulation

log = logging.getLogger(__name__)

SEED_STACK = {"cuda": "lora+q4+bf16+gc+ga:effective_batch={batch}+adam8", "cpu": "lora+gc+ga:effective_batch={batch}"}
DEVICE_DEFAULTS: dict[str, dict[str, Any]] = {
    # 8 steps x 8 x 256 = 16k training tokens and 2 x 4k evaluation tokens: minutes on 2 CPU cores for SmolLM2-135M
    # in fp32. A sweep (fp32, same data) put the held-out drop at ~8 % for this budget (lr 1e-3: ~5 %); 4k sampled
    # tokens tracked the full-test-set drop within 0.7 points.
    "cpu": dict(seq_len=256, target_effective_batch=8, max_steps=8, lr=3e-3, eval_context=256, eval_batch_size=4,
                eval_max_tokens=4096, max_micro_batch=4),
    "cuda": dict(seq_len=512, target_effective_batch=32, epochs=1.0, lr=2e-4, eval_context=512, eval_batch_size=8,
                 eval_max_tokens=None, max_micro_batch=8192),
}


class FinetuneConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    pdf_dir: str = "data/climate"
    text_cache: Optional[str] = None  # extracted page texts; default $MEMFIT_CACHE/text
    model: str = "smollm2-135m"  # the embedded default, a local directory or a Hub id
    architecture: Optional[str] = None  # a shipped config (llama-3.2-3b) or config JSON; implies random_init
    random_init: bool = False
    stack: Optional[str] = None  # spec or YAML; default SEED_STACK for the device. Lacking 'ga', one is added
    seq_len: Optional[int] = Field(None, ge=8)  # training block size = planning sequence length
    target_effective_batch: Optional[int] = Field(None, ge=1)  # sequences per optimizer step, all processes
    max_steps: Optional[int] = Field(None, ge=1)  # optimizer steps; overrides epochs
    epochs: Optional[float] = Field(None, gt=0)
    lr: Optional[float] = Field(None, gt=0)
    warmup: float = Field(0.1, ge=0)
    test_fraction: float = Field(0.2, gt=0, lt=1)
    eval_context: Optional[int] = Field(None, ge=2)
    eval_stride: Optional[int] = Field(None, ge=1)
    eval_batch_size: Optional[int] = Field(None, ge=1)
    eval_max_tokens: Optional[int] = Field(None, ge=0)  # score an evenly spaced sample of the test tokens; 0 = all
    output_dir: str = "results"
    run_name: Optional[str] = None  # default: <model>-<device>
    seed: int = 0
    margin: float = Field(0.03, ge=0, lt=1)  # fraction of device memory the planner keeps free
    fresh: bool = False  # re-probe instead of reusing the planner cache
    plan_cache: Optional[str] = None  # default $MEMFIT_CACHE/plans
    cpu_budget_gib: float = Field(4.0, gt=0)  # CPU only: the simulated device memory the planner searches against
    max_micro_batch: Optional[int] = Field(None, ge=1)  # planner search limit (on CPU it bounds probe time)
    resume: Union[bool, str] = "auto"  # the loop's: continue from the run's latest checkpoint if there is one
    progress: bool = True

    def resolved(self, device_type: str) -> "FinetuneConfig":
        """A copy with every None setting replaced by the device default (what results.json records)."""
        defaults = dict(DEVICE_DEFAULTS["cuda" if device_type == "cuda" else "cpu"])
        if self.max_steps is not None or self.epochs is not None:  # the user chose the length of the run
            defaults.pop("max_steps", None), defaults.pop("epochs", None)
        filled = {k: v for k, v in defaults.items() if getattr(self, k) is None}
        if self.eval_max_tokens == 0:
            filled["eval_max_tokens"] = None
        if self.stack is None:
            batch = self.target_effective_batch or defaults["target_effective_batch"]
            filled["stack"] = SEED_STACK["cuda" if device_type == "cuda" else "cpu"].format(batch=batch)
        if self.run_name is None:
            name = Path(self.architecture or self.model).name.lower()
            random = "-random" if self.random_init or self.architecture else ""
            filled["run_name"] = re.sub(r"[^a-z0-9_.-]+", "-", f"{name}{random}-{device_type}")
        return self.model_copy(update=filled)


def with_accumulation(spec: str, target: int) -> Stack:
    """The stack's own 'ga' decides accumulation (planner and Accelerator read it); without one, reach `target`."""
    stack = Stack.coerce(spec)
    return stack if "ga" in stack else Stack([*stack.strategies, GradientAccumulation(effective_batch=target)])


def sample_documents(test, tokenizer, max_tokens: Optional[int], chunk: int) -> tuple[list[dict], dict[str, Any]]:
    """Whole test documents, or (when they hold more than `max_tokens`) evenly spaced `chunk`-token pieces of them,
    so a capped evaluation still covers every part of every test document. A piece's bytes are those of its decoded
    text (exact for byte-level tokenizers, up to a split character at a piece edge)."""
    docs = [dict(row) for row in test]
    total = sum(len(d["input_ids"]) for d in docs)
    if not max_tokens or total <= max_tokens:
        return docs, {"sampled": False, "test_tokens": total, "scored_documents": len(docs)}
    starts = [(d, s) for d in docs for s in range(0, len(d["input_ids"]) - 1, chunk)]
    n = max(1, min(len(starts), max_tokens // chunk))
    picked = [starts[int(i * len(starts) / n)] for i in range(n)]
    pieces = []
    for doc, s in picked:
        ids = doc["input_ids"][s:s + chunk]
        pieces.append({"name": f"{doc['name']}@{s}", "input_ids": ids,
                       "n_bytes": len(tokenizer.decode(ids).encode("utf-8"))})
    info = {"sampled": True, "test_tokens": total, "pieces": n, "piece_tokens": chunk,
            "note": f"{n} evenly spaced {chunk}-token pieces of the test documents (eval_max_tokens={max_tokens}); "
                    "the same pieces before and after training"}
    return pieces, info


def load_corpus(pdf_dir: str, cache: Optional[str]):
    try:
        corpus = extract_pdfs(pdf_dir, cache)
    except DataError as exc:
        raise DataError(f"{exc}\nThe example needs a folder of text PDFs: put them in {pdf_dir} or pass "
                        f"--pdf-dir DIR (e.g. --pdf-dir ../shared/corpus/climate).") from None
    if not corpus.documents:
        raise DataError(f"none of the PDFs in {pdf_dir} gave usable text:\n{corpus.summary()}")
    return corpus


def run_finetune(cfg: FinetuneConfig | None = None, **overrides: Any) -> dict[str, Any]:
    """Run the whole job (see the module docstring); returns what results.json holds."""
    # before anything else touches accelerate: under `accelerate launch` it joins (on CPU: builds) the process group
    # that the planner's collectives and the Accelerator use
    state = partial_state()

    def info(message: str) -> None:  # progress lines from the main process only
        if state.is_main_process:
            log.info(message)

    cfg = (cfg or FinetuneConfig()).model_copy(update=overrides).resolved(state.device.type)
    configure_runtime(Stack.coerce(cfg.stack))
    run_dir, clock, started = Path(cfg.output_dir) / cfg.run_name, {}, time.perf_counter()

    def phase(name: str, since: float) -> float:
        clock[name] = round(time.perf_counter() - since, 2)
        return time.perf_counter()

    t = started
    with state.main_process_first():  # rank 0 extracts and fills the text cache, the others read it
        corpus = load_corpus(cfg.pdf_dir, cfg.text_cache)
    info(corpus.summary())
    tokenizer = load_tokenizer(None if cfg.architecture else cfg.model)
    bundle = build_datasets(corpus, tokenizer, block_size=cfg.seq_len, test_fraction=cfg.test_fraction,
                            seed=cfg.seed, verbose=False)
    t = phase("data_s", t)

    stack = with_accumulation(cfg.stack, cfg.target_effective_batch)
    for note in check_launch(stack):  # a stack the launch engine cannot run fails here, before loading
        info(f"note: {note}")
    ctx = stack.context(state.device, state.distributed_type, state.num_processes)
    info(f"stack {stack.spec}:\n{stack.describe()}")
    model = load_model(cfg.architecture or cfg.model, stack, ctx, random_init=cfg.random_init or bool(cfg.architecture),
                       seed=cfg.seed)  # the seed LoRA's initial A matrices are drawn with
    t = phase("load_s", t)

    meter = SimulatedMeter(cfg.cpu_budget_gib * 2**30) if state.device.type != "cuda" else None
    planned = plan(model, stack, seq_len=cfg.seq_len, margin=cfg.margin, eval_batch_size=cfg.eval_batch_size,
                   meter=meter, limit=cfg.max_micro_batch, cache_dir=cfg.plan_cache, fresh=cfg.fresh)
    if planned.max_micro_batch < 1:
        raise RuntimeError(f"not even one sequence of {cfg.seq_len} tokens fits with stack {stack.spec} "
                           f"({planned.budget_gib:.1f} GiB): lower --seq-len, add 'gc'/'q4', or use a larger device")
    capped = planned.max_micro_batch >= cfg.max_micro_batch
    info(f"planned micro-batch {planned.max_micro_batch}{' (the max_micro_batch cap)' if capped else ''} x "
         f"{planned.grad_accum} accumulation x {planned.num_processes} processes = {planned.effective_batch} "
         f"({'cached plan' if planned.cache_hit else f'{planned.probe_count} probes'})")
    t = phase("plan_s", t)

    acc = make_accelerator(stack, planned.max_micro_batch, project_dir=str(run_dir), data_seed=cfg.seed)
    eval_docs, eval_info = sample_documents(bundle.test, tokenizer, cfg.eval_max_tokens, cfg.eval_context)

    def evaluate(label: str):
        res = perplexity(model, eval_docs, context_length=cfg.eval_context, stride=cfg.eval_stride,
                         batch_size=cfg.eval_batch_size, accelerator=acc, progress=cfg.progress,
                         pad_token_id=tokenizer.pad_token_id)
        info(f"{label} perplexity {res.perplexity:.3f} ({res.bits_per_byte or math.nan:.4f} bits/byte, "
             f"{res.tokens:,} tokens)")
        return res

    base = evaluate("base")
    t = phase("base_eval_s", t)
    tcfg = TrainConfig(micro_batch=planned.max_micro_batch, max_steps=cfg.max_steps, epochs=cfg.epochs or 1.0,
                       lr=cfg.lr, warmup=cfg.warmup, seed=cfg.seed, output_dir=str(run_dir), progress=cfg.progress,
                       resume=cfg.resume, plan_cache=planned.cache_path,
                       eval_batch_size=cfg.eval_batch_size, eval_context=cfg.eval_context, eval_stride=cfg.eval_stride)
    trained = train(model, stack, bundle.train, tcfg, accelerator=acc)
    t = phase("train_s", t)
    final = evaluate("final")
    phase("final_eval_s", t)
    clock["total_s"] = round(time.perf_counter() - started, 2)

    results = {
        "max_batch_size": planned.max_micro_batch,
        "gradient_accumulation_steps": trained.grad_accum,
        "effective_batch_size": trained.effective_batch,
        "final_perplexity": final.perplexity,
        "base_perplexity": base.perplexity,
        "perplexity_change_pct": 100.0 * (final.perplexity / base.perplexity - 1.0),
        "base_bits_per_byte": base.bits_per_byte,
        "final_bits_per_byte": final.bits_per_byte,
        "tokens_per_s": trained.tokens_per_s,
        "memory": {"train": trained.memory, "planned_peak_gib": planned.peak_gib, "budget_gib": planned.budget_gib,
                   "breakdown_gib": planned.memory_breakdown_gib},
        "device": planned.device, "num_processes": acc.num_processes,
        "versions": versions(),
        "model": cfg.architecture or cfg.model, "random_init": cfg.random_init or bool(cfg.architecture),
        "stack": stack.spec, "stack_description": stack.describe(),
        "data": {"pdf_dir": str(cfg.pdf_dir), "documents": len(corpus.documents),
                 "skipped_files": [str(e) for e in corpus.errors],
                 "text_from_cache": sum(d.from_cache for d in corpus.documents),
                 "split": {k: asdict(v) for k, v in bundle.stats.items()}, "test_documents": list(bundle.plan.test)},
        "evaluation": {**eval_info, "context_length": final.context_length, "stride": final.stride,
                       "scored_tokens": final.tokens, "scored_bytes": final.bytes, "base": base.to_dict(),
                       "final": final.to_dict()},
        "plan": {**planned.to_dict(), "capped_by_max_micro_batch": capped},
        "train": {k: v for k, v in trained.to_dict().items() if k != "memory"},
        "adapter_dir": trained.adapter_dir,
        "seconds": clock,
        "config": cfg.model_dump(),
    }
    if state.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "results.json").write_text(json.dumps(results, indent=2, default=str))
        (run_dir / "summary.md").write_text(summary_markdown(results, bundle.format_stats()))
        info(f"wrote {run_dir / 'results.json'} and {run_dir / 'summary.md'}")
    state.wait_for_everyone()
    return results


def summary_markdown(r: dict[str, Any], data_table: str = "") -> str:
    p, e, mem = r["plan"], r["evaluation"], r["memory"]
    peak = mem["train"].get("peak_gib", mem["train"].get("peak_rss_gib"))
    cap = " (the max_micro_batch cap; memory would allow more)" if p["capped_by_max_micro_batch"] else ""
    rows = [
        ("maximum batch size", f"{r['max_batch_size']} sequences of {p['seq_len']} tokens per process{cap}"),
        ("gradient accumulation steps", r["gradient_accumulation_steps"]),
        ("effective batch size", f"{r['effective_batch_size']} (= {r['max_batch_size']} x "
                                 f"{r['gradient_accumulation_steps']} x {r['num_processes']} processes)"),
        ("final perplexity", f"{r['final_perplexity']:.3f} ({r['final_bits_per_byte'] or math.nan:.4f} bits/byte)"),
        ("base perplexity", f"{r['base_perplexity']:.3f} ({r['base_bits_per_byte'] or math.nan:.4f} bits/byte); "
                            f"change {r['perplexity_change_pct']:+.1f} %"),
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
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    return (f"# memfit fine-tune: {r['model']} on {r['data']['documents']} PDFs\n\n| | |\n|---|---|\n{table}\n\n"
            f"## Data\n```\n{data_table}\n```\n\n## Stack\n```\n{r['stack_description']}\n```\n")
