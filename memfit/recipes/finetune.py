"""The climate job as one library call: data -> document split -> model + stack -> planned micro-batch -> training
-> perplexity before and after -> `<output_dir>/<run>/results.json`, `summary.md` and the adapter.

    from memfit.recipes.finetune import FinetuneConfig, run_finetune
    results = run_finetune(FinetuneConfig(pdf_dir="papers/", max_steps=50))

The job runs in phases, torchtune-style, each a method of FinetuneRecipe with typed inputs: setup_data, setup_stack,
setup_model, plan, train, evaluate (before and after) and report; the settings are one nested FinetuneConfig
(memfit/recipes/run_config.py). Settings left unset take a device default (`DEVICE_DEFAULTS`). On CUDA the default
stack is `auto`: the planner probes exact-first candidates on top of LoRA + bf16 and takes the fastest that reaches
the effective batch (memfit.plan.auto). On CPU it is fp32 LoRA on every linear layer + accumulation, no
checkpointing and no bitsandbytes: its CPU kernels are slow, and 4-bit weights or 8-bit moments save ~0.4 GB for a
135M model on a host with tens of GB, so they would only cost time. The CPU budget is sized to finish in minutes on 2
cores (short run, capped micro-batch, an evenly spaced sample of the test tokens). Works under `accelerate launch`:
every rank plans (the planner agrees on the minimum), one Accelerator serves training and evaluation, and only the
main process writes files.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..core.protocol import effective_batch_target
from ..core.stack import Stack
from ..launch.distributed import check_launch, partial_state
from ..models import load_model
from ..runtime import configure_runtime
from ..training.loop import make_accelerator, train
from ..training.run_lock import RunLock
from ..training.trackers import finish_trackers, log_evaluation, start_trackers
from .finetune_data import finetune_datasets
from .held_out import HeldOut, fitted_context
from .planning import check_blocks, plan_training
from .preflight import (check_data_fits, check_vocabulary, fitted_effective_batch, job_tokenizer,
                        model_config_without_weights, preflight, validated)
from .quality import original_result
from .results import results_record, write_run_report
from .sample_answer import SampleAnswer
from .saved_run import BASE_FINGERPRINT, base_fingerprint
from .run_config import DEVICE_DEFAULTS, FinetuneConfig  # noqa: F401 - public names of this module
from .stack_choice import auto_stack, with_accumulation, with_effective_batch

log = logging.getLogger(__name__)


@dataclass
class Clock:
    """Wall seconds per phase (results.json's "seconds")."""
    seconds: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    last: float = field(default_factory=time.perf_counter)

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name], self.last = round(now - self.last, 2), now

    def total(self) -> dict[str, float]:
        return {**self.seconds, "total_s": round(time.perf_counter() - self.started, 2)}


@dataclass
class DataPhase:
    tokenizer: Any
    bundle: Any  # memfit.data DataBundle: train blocks, test documents, split statistics
    info: dict[str, Any]  # results.json's "data" entry


@dataclass
class ModelPhase:
    model: Any
    load_copy: Callable[[], Any]  # a fresh copy (the planning copy under a multi-process launch)
    ctx: Any


class FinetuneRecipe:
    """One run of the job: `cfg` resolved for this device, the run folder checked and locked by run_finetune."""

    base_fingerprint: str | None = None  # set by setup_model: the base weights' content (None: random weights)

    def __init__(self, cfg: FinetuneConfig, state, run_dir: Path):
        self.cfg, self.state, self.run_dir, self.clock = cfg, state, run_dir, Clock()

    def say(self, message: str) -> None:  # progress lines from the main process only
        if self.state.is_main_process:
            log.info(message)

    def setup_data(self) -> DataPhase:
        tokenizer = job_tokenizer(self.cfg.model)
        self.check_vocabulary(tokenizer)
        bundle, info, summary = finetune_datasets(self.cfg.data_request(), tokenizer, self.state)
        self.say(summary)
        self.clock.lap("data_s")
        return DataPhase(tokenizer, bundle, info)

    def setup_stack(self, train_blocks: int) -> Stack:
        cfg = self.cfg
        chose = str(cfg.stack).strip().lower() == "auto"
        stack = with_accumulation(auto_stack(cfg, self.state) if chose else cfg.stack,
                                  cfg.plan.target_effective_batch)
        if chose:  # the winner's declared needs (compile's dynamo recompile limit): the first call had no stack
            configure_runtime(stack)
        target = effective_batch_target(stack) or cfg.plan.target_effective_batch
        if target > train_blocks and cfg.effective_batch_is_default and effective_batch_target(stack):
            fitted = fitted_effective_batch(train_blocks)
            stack = with_effective_batch(stack, fitted)
            self.say(f"note: the device's default effective batch {target} is more than the {train_blocks} training "
                     f"blocks of {cfg.data.seq_len} tokens: training at {fitted}, a quarter of them (at least 4 steps "
                     f"per epoch); --target-effective-batch sets it")
            target = fitted
        check_data_fits(target, train_blocks, cfg.data.seq_len, cfg.stack_names_effective_batch)
        for note in check_launch(stack):  # a stack the launch engine cannot run fails here, before loading
            self.say(f"note: {note}")
        self.say(f"stack {stack.spec}:\n{stack.describe()}")
        return stack

    def check_vocabulary(self, tokenizer) -> None:
        """The tokenizer against the model's vocabulary, from its config (no weights read), before any tokenising; a
        Hub id whose config is not local yet meets the loader's embedding lookup instead."""
        source = self.cfg.model.source
        try:
            config = model_config_without_weights(source)[0]
        except (OSError, ValueError):
            return
        check_vocabulary(tokenizer, config, source)

    def setup_model(self, stack: Stack) -> ModelPhase:
        model_cfg, state = self.cfg.model, self.state
        ctx = stack.context(state.device, state.distributed_type, state.num_processes)

        def load():  # the seed: the LoRA's initial A matrices are drawn with it
            return load_model(model_cfg.source, stack, ctx, random_init=model_cfg.random, seed=self.cfg.seed)

        model = load()
        # the weights' content, not their folder name: eval, merge and resume refuse a base that changed since
        self.base_fingerprint = None if model_cfg.random else base_fingerprint(model_cfg.name)
        limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
        context = fitted_context(self.cfg.eval.eval_context, limit, self.say)
        self.cfg = self.cfg.updated(eval_context=context)
        self.clock.lap("load_s")
        return ModelPhase(model, load, ctx)

    def plan(self, loaded: ModelPhase, stack: Stack):
        cfg = self.cfg
        planned = plan_training(loaded.model, stack, self.state, loaded.load_copy, cfg.plan, seq_len=cfg.data.seq_len,
                                eval_batch_size=cfg.eval.eval_batch_size, packed=True,
                                target=effective_batch_target(stack), say=self.say)
        # packed=True for padded blocks too: their attention mask and packed blocks' restarting positions both make
        # transformers build a 4-D mask, so the probes take the training step's attention path either way
        self.clock.lap("plan_s")
        return planned

    def train_config(self, planned, data: DataPhase):
        """The loop's settings: the train section as given, plus what the job decides (from the plan: the
        micro-batch and the block length; the run folder, the seed and the eval section)."""
        cfg = self.cfg
        return cfg.train.model_copy(update=dict(
            seq_len=planned.seq_len, micro_batch=planned.micro_batch, output_dir=str(self.run_dir), plan_cache=planned.cache_path,
            seed=cfg.seed, run_identity={**cfg.identity(), "data_sha256": data.info["sha256"],
                                         **({"model weights": self.base_fingerprint} if self.base_fingerprint else {})},
            **cfg.eval.model_dump(exclude={"eval_max_tokens", "sample_prompt"})))

    def train(self, loaded: ModelPhase, stack: Stack, data: DataPhase, tcfg, during: HeldOut, acc):
        """`during`: what eval_every scores - the validation split when there is one, else the test documents."""
        trained = train(loaded.model, stack, data.bundle.train, tcfg, eval_data=during.pieces, accelerator=acc,
                        tokenizer=data.tokenizer)  # its chat template and overrides travel with the adapter
        self.clock.lap("train_s")
        return trained

    def run(self) -> dict[str, Any]:
        data = self.setup_data()
        stack = self.setup_stack(len(data.bundle.train))
        loaded = self.setup_model(stack)
        planned = self.plan(loaded, stack)
        check_blocks(data.bundle.train, data.bundle.block_size, planned)
        cfg = self.cfg
        acc = make_accelerator(stack, planned.micro_batch, cfg.train.log_with, project_dir=str(self.run_dir),
                               data_seed=cfg.seed)
        held_out = HeldOut(data.bundle.test, data.tokenizer, cfg.eval, acc, cfg.train.progress, self.say)
        validation = None if data.bundle.validation is None else \
            HeldOut(data.bundle.validation, data.tokenizer, cfg.eval, acc, cfg.train.progress, self.say, "validation")
        sample = SampleAnswer(cfg.eval.sample_prompt, data.tokenizer, data.bundle.chat, self.state, self.say)
        tcfg = self.train_config(planned, data)
        if tcfg.log_with:  # started here, not in train(): the evaluations before and after training are logged too
            start_trackers(acc, stack, tcfg)
        # the eval/perplexity tracker curve holds one split: the validation documents when the periodic evaluations
        # score them, else the test documents (base, periodic, final)
        test_curve = validation is None
        base, original = self.evaluate_before(loaded, stack, held_out, acc, test_curve)
        validation_base = validation.score(loaded.model, "validation base") if validation else None
        if validation_base:
            log_evaluation(acc, validation_base.to_dict(), 0, "validation_base")
        sample.take(loaded.model, "before")
        trained = self.train(loaded, stack, data, tcfg, validation or held_out, acc)
        final = held_out.score(loaded.model, "final")
        log_evaluation(acc, final.to_dict(), trained.steps, "final", test_curve)
        extra: dict[str, Any] = {}
        if validation:  # the last periodic evaluation already scored the trained model: not scored twice
            last = trained.evals[-1] if trained.evals and trained.evals[-1]["step"] == trained.steps else None
            validation_final = last or validation.score(loaded.model, "validation final").to_dict()
            if not last:
                log_evaluation(acc, validation_final, trained.steps, "validation_final")
            extra["validation"] = validation.split_record(validation_base, validation_final, tcfg.eval_every)
        sample.take(loaded.model, "after")
        extra["sample_answer"] = sample.record()
        finish_trackers(acc)
        self.clock.lap("final_eval_s")
        return self.report(loaded.model, stack, planned, trained, held_out.record(original, base, final), original,
                           base, final, data, acc.num_processes, extra)

    def evaluate_before(self, loaded: ModelPhase, stack: Stack, held_out: HeldOut, acc, curve: bool = True):
        """The base as trained and, when the stack changes its weights, the original at full precision."""
        model_cfg = self.cfg.model
        base = held_out.score(loaded.model, "base")
        log_evaluation(acc, base.to_dict(), 0, "base", curve)
        original = original_result(base, stack, model_cfg.random,
                                   lambda: load_model(model_cfg.name, Stack(), loaded.ctx, seed=self.cfg.seed),
                                   lambda m, label: held_out.score(m, label))
        if original is not base:
            log_evaluation(acc, original.to_dict(), 0, "original", curve)
        self.clock.lap("base_eval_s")
        return base, original

    def report(self, model, stack, planned, trained, evaluation, original, base, final, data: DataPhase,
               num_processes: int, extra: dict[str, Any]) -> dict[str, Any]:
        """`extra`: the validation split's numbers (when there is one) and the sample answers."""
        results = results_record(self.cfg, model=model, stack=stack, planned=planned, trained=trained, evaluation=evaluation,
                                 original=original, base=base, final=final, data_info=data.info,
                                 num_processes=num_processes, clock=self.clock.total())
        results[BASE_FINGERPRINT] = self.base_fingerprint
        results.update(extra)
        write_run_report(self.run_dir, results, data.bundle.format_stats(), self.state.is_main_process, self.say)
        self.state.wait_for_everyone()
        return results


def run_finetune(cfg: FinetuneConfig | None = None, **overrides: Any) -> dict[str, Any]:
    """Run the whole job (see the module docstring); `overrides` are flat settings (lr=1e-3, seq_len=64); returns
    what results.json holds."""
    # before anything else touches accelerate: under `accelerate launch` it joins (on CPU: builds) the process group
    # that the planner's collectives and the Accelerator use
    state = partial_state()
    cfg = validated(cfg or FinetuneConfig(), **overrides).resolved(state.device.type)
    run_dir = preflight(cfg)  # settings, stack, model path and output folder, before any slow work
    # process-wide settings (allocator, SDPA, what the strategies declare) before CUDA initialises; an 'auto'
    # stack is chosen later, by probes that run under these same settings
    configure_runtime(None if str(cfg.stack).strip().lower() == "auto" else Stack.coerce(cfg.stack))
    try:
        with RunLock(run_dir if state.is_main_process else None):
            return FinetuneRecipe(cfg, state, run_dir).run()
    except BaseException:
        with contextlib.suppress(OSError):  # a run that failed before writing anything leaves no empty folder
            run_dir.rmdir()
        raise
