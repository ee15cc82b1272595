"""The climate job as one library call: PDFs -> document split -> model + stack -> planned micro-batch -> training
-> perplexity before and after -> `<output_dir>/<run>/results.json`, `summary.md` and the adapter.

    from memfit.recipes.finetune import FinetuneConfig, run_finetune
    results = run_finetune(FinetuneConfig(pdf_dir="papers/", max_steps=50))

Settings left at None take a device default (`DEVICE_DEFAULTS`). On CUDA the default stack is `auto`: the planner
probes exact-first candidates on top of LoRA + bf16 and takes the fastest that reaches the effective batch
(memfit.plan.auto; lossy 8-bit moments / 8-bit / 4-bit weights only when nothing exact fits). On CPU it is
fp32 LoRA on every linear layer + accumulation, no checkpointing and no bitsandbytes: its CPU kernels are slow,
and 4-bit weights or 8-bit moments save ~0.4 GB for a 135M model on a host with tens of GB, so they would only cost time. The CPU budget is
sized to finish in minutes on 2 cores (short run, capped micro-batch, an evenly spaced sample of the test tokens).
Works under `accelerate launch`: every rank plans (the planner agrees on the minimum), one Accelerator serves
training and evaluation, and only the main process writes files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import time
from pathlib import Path
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..data.sources import Source
from ..launch.distributed import check_launch, partial_state
from ..evaluation import perplexity
from ..core.files import atomic_write_json, atomic_write_text
from ..training.loop import TrainConfig, make_accelerator, train
from ..training.trackers import finish_trackers, log_evaluation, start_trackers
from ..training.run_lock import RunLock
from .preflight import ConfigError, check_data_fits, preflight
from ..models import load_model, load_tokenizer
from .finetune_data import finetune_datasets, sample_documents
from .stack_choice import auto_stack, with_accumulation
from ..plan.planner import versions
from .engine_plan import plan_run
from ..plan.probe import SimulatedMeter
from ..core.stack import Stack
from .quality import original_result, quality_fields, warn_if_regressed
from .curves import CURVES_FILE, write_curves
from .held_out import fitted_context, sample_chunk
from .limits import CPU_BUDGET_GIB, MARGIN, MAX_EPOCHS, MAX_LR, MAX_SEED, number_problem
from .summary import summary_markdown
from ..runtime import configure_runtime

log = logging.getLogger(__name__)

# CUDA: the planner chooses (memfit.plan.auto) on top of stack_choice.AUTO_BASE; CPU: fixed and fast (auto would probe for minutes).
# The CPU stack is the sweep's pick (benchmarks/results/h200-2026-12-02/sweeps/cpu_demo, 2 torch threads per run):
# LoRA on every linear layer, no dropout and no checkpointing (memory is not the limit for 135M on a host, and
# recomputation cost ~40 % of the step time): -14.0 % held-out perplexity against the original in 8 steps, where
# q/k/v/o LoRA with checkpointing reached -10.9 % in 1.6x the training time. The demo runs 6 of those steps so the
# whole job stays under 10 minutes on 2 busy cores (measured: -11.8 %, 7 min; benchmarks/results/cpu-demo-2026-12-02).
ALL_LINEAR = "q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj"
SEED_STACK = {"cuda": "auto", "cpu": "lora:targets=" + ALL_LINEAR + ",dropout=0+ga:effective_batch={batch}"}
DEVICE_DEFAULTS: dict[str, dict[str, Any]] = {
    # 6 steps x 8 x 256 = 12k training tokens and 2 x 4k evaluation tokens: minutes on 2 CPU cores for SmolLM2-135M
    # in fp32. Swept lr 1e-3..6e-3 and 8/16 steps: 3e-3 for 8 steps (-14.0 %) = 1e-3 for 16 (-13.9 %); 3e-3 for 16
    # steps overshoots on the one training document of the bundled sample (-6.1 %), 6e-3 regresses (+5.8 %).
    "cpu": dict(seq_len=256, target_effective_batch=8, max_steps=6, lr=3e-3, eval_context=256, eval_batch_size=4,
                eval_max_tokens=4096, max_micro_batch=4),
    "cuda": dict(seq_len=512, target_effective_batch=32, epochs=1.0, lr=2e-4, eval_context=512, eval_batch_size=8,
                 eval_max_tokens=None, max_micro_batch=8192),
}


# what decides the result besides the data (whose content hash the run adds): the run fingerprint and default name
IDENTITY_KEYS = {"model", "architecture", "random_init", "stack", "seq_len", "target_effective_batch", "lr", "warmup",
                 "test_fraction", "seed", "weight_decay", "scheduler", "max_grad_norm"}


class FinetuneConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    pdf_dir: str = Field("data/climate", description="folder of text PDFs: the one PDF source used when `sources` "
                                                     "is empty")
    sources: list[Source] = Field(default_factory=list, description=(
        "training data: PDF folders, .txt/.md files or folders, JSONL/CSV/Parquet tables, save_to_disk folders, "
        "Hub ids, each {kind: pdf|text|table|saved|hub, path or id, weight, ...}; one document split across all. "
        "Empty: the PDF folder pdf_dir"))
    text_cache: Optional[str] = Field(None, description="extracted page texts; default $MEMFIT_CACHE/text")
    arrow_cache: Optional[bool] = Field(None, description=(
        "tokenise through datasets' Arrow cache ($MEMFIT_CACHE/arrow, reused by a rerun) and train from memory-mapped "
        "blocks: corpora larger than memory. null: when the input files exceed 256 MB or a source is a Hub id"))
    num_proc: Optional[int] = Field(None, ge=1, description="tokenising processes on the Arrow path; default 1 on "
                                                             "CPU, up to 8 on a GPU host")
    model: str = Field("smollm2-135m", description="the embedded default, a local directory or a Hub id")
    architecture: Optional[str] = Field(None, description="a shipped config (llama-3.2-3b) or config JSON; implies "
                                                          "random_init")
    random_init: bool = Field(False, description="random weights (capacity/throughput runs)")
    stack: Optional[str] = Field(None, description="memory strategies, spec or YAML; default: the device's seed "
                                                   "stack. Lacking 'ga', one is added")
    seq_len: Optional[int] = Field(None, ge=8, description="training block size = planning sequence length")
    target_effective_batch: Optional[int] = Field(None, ge=1, description="sequences per optimizer step, all "
                                                                          "processes")
    max_steps: Optional[int] = Field(None, ge=1, description="optimizer steps; overrides epochs")
    epochs: Optional[float] = Field(None, gt=0, le=MAX_EPOCHS, allow_inf_nan=False, description="passes over the training documents")
    lr: Optional[float] = Field(None, gt=0, le=MAX_LR, allow_inf_nan=False, description="peak learning rate (at most 1.0)")
    warmup: float = Field(0.1, ge=0, allow_inf_nan=False, description="warm-up: fraction of steps if < 1, else a step count")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="fraction of documents held out for evaluation")
    eval_context: Optional[int] = Field(None, ge=2, description="evaluation window in tokens")
    eval_stride: Optional[int] = Field(None, ge=1, description="sliding-window stride; default the window")
    eval_batch_size: Optional[int] = Field(None, ge=1, description="evaluation windows per forward pass")
    eval_max_tokens: Optional[int] = Field(None, ge=0, description="score an evenly spaced sample of this many test "
                                                                   "tokens; 0 = all")
    output_dir: str = Field("results", description="parent folder of run directories")
    run_name: Optional[str] = Field(None, description="run directory name; default <model>-<device>-<fingerprint>")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="seed of the document split, LoRA init and data order")
    margin: float = Field(0.03, ge=MARGIN[0], lt=MARGIN[1], allow_inf_nan=False, description="fraction of device memory the planner keeps free")
    fresh: bool = Field(False, description="re-probe instead of reusing the planner cache")
    plan_cache: Optional[str] = Field(None, description="planner cache folder; default $MEMFIT_CACHE/plans")
    cpu_budget_gib: float = Field(4.0, ge=CPU_BUDGET_GIB[0], le=CPU_BUDGET_GIB[1], allow_inf_nan=False,
                                  description="CPU only: the simulated device memory the planner searches against")
    max_micro_batch: Optional[int] = Field(None, ge=1, description="planner search limit (on CPU it bounds probe "
                                                                   "time)")
    # the training loop's own settings, with TrainConfig's defaults, checks and help
    weight_decay: float = TrainConfig.model_fields["weight_decay"]
    scheduler: Literal["cosine", "linear", "constant"] = TrainConfig.model_fields["scheduler"]
    max_grad_norm: Optional[float] = TrainConfig.model_fields["max_grad_norm"]
    eval_every: Optional[int] = TrainConfig.model_fields["eval_every"]
    checkpoint_every: Optional[int] = TrainConfig.model_fields["checkpoint_every"]
    checkpoint_minutes: Optional[float] = TrainConfig.model_fields["checkpoint_minutes"]
    keep_last: int = TrainConfig.model_fields["keep_last"]
    log_with: Optional[str] = Field("tensorboard", description="an accelerate tracker (tensorboard, wandb, ...); "
                                                               "null: none")
    resume: Union[bool, str] = TrainConfig.model_fields["resume"]
    progress: bool = Field(True, description="progress bars")
    keep_non_english: bool = Field(False, description="train on documents the language check flags as not English")

    @field_validator("*")
    @classmethod
    def _finite_and_bounded(cls, value: Any) -> Any:
        """Every number finite and every count within limits.MAX_COUNT (see memfit/recipes/limits.py)."""
        problem = number_problem(value)
        if problem:
            raise ValueError(problem)
        return value

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
        resolved = self.model_copy(update=filled)
        if self.run_name is None:  # the settings' hash in the name: different configurations never share a folder
            name = Path(self.architecture or self.model).name.lower()
            random = "-random" if self.random_init or self.architecture else ""
            tag = f"{name}{random}-{device_type}-{resolved.settings_hash()}"
            resolved.run_name = re.sub(r"[^a-z0-9_.-]+", "-", tag)
        return resolved

    def identity(self) -> dict[str, Any]:
        """The settings that change what a run computes (not its length, paths or display options)."""
        return self.model_dump(include=IDENTITY_KEYS)

    def settings_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.identity(), sort_keys=True, default=str).encode()).hexdigest()[:8]


def run_finetune(cfg: FinetuneConfig | None = None, **overrides: Any) -> dict[str, Any]:
    """Run the whole job (see the module docstring); returns what results.json holds."""
    # before anything else touches accelerate: under `accelerate launch` it joins (on CPU: builds) the process group
    # that the planner's collectives and the Accelerator use
    state = partial_state()

    def info(message: str) -> None:  # progress lines from the main process only
        if state.is_main_process:
            log.info(message)

    cfg = (cfg or FinetuneConfig()).model_copy(update=overrides).resolved(state.device.type)
    run_dir = preflight(cfg)  # settings, stack, model path and output folder, before any slow work
    # process-wide settings (allocator, SDPA, what the strategies declare) before CUDA initialises; an 'auto'
    # stack is chosen later, by probes that run under these same settings
    configure_runtime(None if str(cfg.stack).strip().lower() == "auto" else Stack.coerce(cfg.stack))
    with RunLock(run_dir if state.is_main_process else None):
        return _run(cfg, state, run_dir, info)


def _run(cfg: FinetuneConfig, state, run_dir: Path, info) -> dict[str, Any]:
    clock, started = {}, time.perf_counter()

    def phase(name: str, since: float) -> float:
        clock[name] = round(time.perf_counter() - since, 2)
        return time.perf_counter()

    t = started
    tokenizer = load_tokenizer(None if cfg.architecture else cfg.model)
    bundle, data_info, data_summary = finetune_datasets(cfg, tokenizer, state)
    info(data_summary)
    t = phase("data_s", t)

    chose = str(cfg.stack).strip().lower() == "auto"
    spec = auto_stack(cfg, state) if chose else cfg.stack
    stack = with_accumulation(spec, cfg.target_effective_batch)
    if chose:  # the winner's declared needs (compile's dynamo recompile limit): the first call had no stack
        configure_runtime(stack)
    # the effective batch the stack's own 'ga' asks for (None for fixed steps, e.g. 'ga8'): the planner trains at
    # the smallest micro-batch that reaches it in the fewest accumulation steps, not at the max
    target = getattr(stack.get("ga"), "effective_batch", None)
    check_data_fits(target or cfg.target_effective_batch, len(bundle.train), cfg.seq_len)
    for note in check_launch(stack):  # a stack the launch engine cannot run fails here, before loading
        info(f"note: {note}")
    ctx = stack.context(state.device, state.distributed_type, state.num_processes)
    info(f"stack {stack.spec}:\n{stack.describe()}")
    def load():  # the seed: the LoRA's initial A matrices are drawn with it
        return load_model(cfg.architecture or cfg.model, stack, ctx,
                          random_init=cfg.random_init or bool(cfg.architecture), seed=cfg.seed)

    model = load()
    t = phase("load_s", t)
    limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    cfg = cfg.model_copy(update={"eval_context": fitted_context(cfg.eval_context, limit, info)})

    meter = SimulatedMeter(cfg.cpu_budget_gib * 2**30) if state.device.type != "cuda" else None
    # under DDP/ZeRO/FSDP2 the probes step a copy prepared by that engine (memfit.recipes.engine_plan)
    planned = plan_run(model, stack, state, load, seq_len=cfg.seq_len, margin=cfg.margin,
                       eval_batch_size=cfg.eval_batch_size, meter=meter, limit=cfg.max_micro_batch,
                       cache_dir=cfg.plan_cache, fresh=cfg.fresh, target_effective_batch=target,
                       packed=True)  # training blocks are packed documents: probe the same attention path
    if planned.max_micro_batch < 1:
        raise ConfigError(f"not even one sequence of {cfg.seq_len} tokens fits with stack {stack.spec} "
                           f"({planned.budget_gib:.1f} GiB): lower --seq-len, add 'gc'/'q4', or use a larger device")
    capped = planned.max_micro_batch >= cfg.max_micro_batch
    info(f"planned micro-batch {planned.micro_batch} (max {planned.max_micro_batch}"
         f"{', the max_micro_batch cap' if capped else ''}) x {planned.grad_accum} accumulation x {planned.num_processes} processes = {planned.effective_batch} "
         f"({'cached plan' if planned.cache_hit else f'{planned.probe_count} probes'})")
    t = phase("plan_s", t)

    acc = make_accelerator(stack, planned.micro_batch, cfg.log_with, project_dir=str(run_dir), data_seed=cfg.seed)
    eval_docs, eval_info = sample_documents(bundle.test, tokenizer, cfg.eval_max_tokens,
                                           sample_chunk(cfg.eval_context, cfg.eval_max_tokens))

    def evaluate(label: str, scored=None):
        res = perplexity(model if scored is None else scored, eval_docs, context_length=cfg.eval_context,
                         stride=cfg.eval_stride,
                         batch_size=cfg.eval_batch_size, accelerator=acc, progress=cfg.progress,
                         pad_token_id=tokenizer.pad_token_id)
        info(f"{label} perplexity {res.perplexity:.3f} ({res.bits_per_byte or math.nan:.4f} bits/byte, "
             f"{res.tokens:,} tokens)")
        return res

    tcfg = TrainConfig(micro_batch=planned.micro_batch, max_steps=cfg.max_steps, epochs=cfg.epochs or 1.0,
                       lr=cfg.lr, warmup=cfg.warmup, seed=cfg.seed, output_dir=str(run_dir), progress=cfg.progress,
                       resume=cfg.resume, plan_cache=planned.cache_path, weight_decay=cfg.weight_decay,
                       scheduler=cfg.scheduler, max_grad_norm=cfg.max_grad_norm, eval_every=cfg.eval_every,
                       checkpoint_every=cfg.checkpoint_every, keep_last=cfg.keep_last, log_with=cfg.log_with,
                       run_identity={**cfg.identity(), "data_sha256": data_info["sha256"]},
                       checkpoint_minutes=cfg.checkpoint_minutes,
                       eval_batch_size=cfg.eval_batch_size, eval_context=cfg.eval_context, eval_stride=cfg.eval_stride)
    if cfg.log_with:  # started here, not in train(): the evaluations before and after training are logged too
        start_trackers(acc, stack, tcfg)
    base = evaluate("base")
    log_evaluation(acc, base.to_dict(), 0, "base")
    original = original_result(base, stack, cfg.random_init or bool(cfg.architecture),
                               lambda: load_model(cfg.model, Stack(), ctx, seed=cfg.seed),
                               lambda m, label: evaluate(label, m))
    if original is not base:
        log_evaluation(acc, original.to_dict(), 0, "original")
    t = phase("base_eval_s", t)
    trained = train(model, stack, bundle.train, tcfg, eval_data=eval_docs, accelerator=acc)  # eval_every's points
    t = phase("train_s", t)
    final = evaluate("final")
    log_evaluation(acc, final.to_dict(), trained.steps, "final")
    finish_trackers(acc)
    phase("final_eval_s", t)
    clock["total_s"] = round(time.perf_counter() - started, 2)

    results = {
        "max_batch_size": planned.max_micro_batch,
        "gradient_accumulation_steps": trained.grad_accum,
        "effective_batch_size": trained.effective_batch,
        **quality_fields(original, base, final),
        "tokens_per_s": trained.tokens_per_s,
        "memory": {"train": trained.memory, "planned_peak_gib": planned.peak_gib, "budget_gib": planned.budget_gib,
                   "breakdown_gib": planned.memory_breakdown_gib},
        "device": planned.device, "num_processes": acc.num_processes,
        "versions": versions(),
        "model": cfg.architecture or cfg.model, "random_init": cfg.random_init or bool(cfg.architecture),
        "stack": stack.spec, "stack_description": stack.describe(),
        "data": data_info,
        "evaluation": {**eval_info, "context_length": final.context_length, "stride": final.stride,
                       "scored_tokens": final.tokens, "scored_bytes": final.bytes, "original": original.to_dict(),
                       "base": base.to_dict(),
                       "final": final.to_dict()},
        "plan": {**planned.to_dict(), "capped_by_max_micro_batch": capped},
        "train": {k: v for k, v in trained.to_dict().items() if k != "memory"},
        "adapter_dir": trained.adapter_dir,
        "seconds": clock,
        "config": cfg.model_dump(),
    }
    keep_previous_rate(results, run_dir / "results.json")
    if not math.isfinite(final.perplexity):
        results["error"] = (f"the final perplexity is not finite ({final.perplexity}): training diverged; lower the "
                            f"learning rate")
    if state.is_main_process:
        warn_if_regressed(results)
        if write_curves(run_dir, results):
            results["curves_png"] = CURVES_FILE
        atomic_write_json(run_dir / "results.json", results, default=str)  # NaN becomes null: always valid JSON
        atomic_write_text(run_dir / "summary.md", summary_markdown(results, bundle.format_stats()))
        info(f"wrote {run_dir / 'results.json'} and {run_dir / 'summary.md'}")
    state.wait_for_everyone()
    return results


def keep_previous_rate(results: dict[str, Any], previous: Path) -> None:
    """A rerun of a finished run resumes at its last step and trains nothing: keep the measured throughput of the run
    that did the training instead of overwriting it with 0."""
    if results["tokens_per_s"] or not previous.is_file():
        return
    try:
        rate = json.loads(previous.read_text()).get("tokens_per_s")
    except (OSError, ValueError):
        return
    if rate:
        results["tokens_per_s"] = rate
        results["train"]["tokens_per_s_note"] = "measured by the earlier run that trained; this rerun trained no steps"
