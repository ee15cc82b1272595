"""The hand-written accelerate training loop (no HF Trainer).

Accumulation windows are exactly `k` micro-batches long (k from the stack at the configured micro-batch) and stream
across epoch boundaries, so every optimizer step sees the same number of sequences. Each window is one call of the
training step (memfit.core.step.train_step, the one the planner probes and times), which normalises the loss once:
the summed token NLL of all micro-batches on all processes divided by the window's total predicted-token count.

Reliability (issue 9): with an output_dir the run checkpoints atomically every `checkpoint_every` steps and at the end
and resumes exactly from the newest good checkpoint (memfit.training.checkpoint); a longer run continues on the
schedule over its new total (memfit.training.schedule); a real OOM re-runs the window in smaller micro-batches at the
same effective batch (memfit.training.backoff); a non-finite loss skips the update, and a persistent one stops the run
with the last good checkpoint on disk; SIGINT/SIGTERM finish the step, save it and stop
(memfit.training.interrupt).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

from .backoff import OOMBackoff
from .config import TrainConfig  # noqa: F401 - memfit.training.loop.TrainConfig, as before
from .checkpoint import Checkpointer, TrainState, ensure_writable
from .data_stream import DataStream, check_block_length
from .interrupt import StopOnSignal, TrainingInterrupted
from .saving import save_trained
from .schedule import continue_schedule, lr_scheduler
from .trackers import finish_trackers, log_evaluation, start_trackers
from .run_lock import RunLock
from ..core.stack import Stack
from ..core.step import Engine, train_step
from .telemetry import Meter, memory_stats, reset_peak

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    steps: int = 0
    micro_batch: int = 0
    grad_accum: int = 1
    num_processes: int = 1
    effective_batch: int = 0
    tokens: int = 0
    seconds: float = 0.0
    tokens_per_s: float = 0.0
    losses: list[float] = field(default_factory=list)
    skipped_steps: int = 0  # updates the fp16 loss scaler skipped (overflow)
    nonfinite_steps: int = 0  # updates skipped because the loss or gradient norm was NaN/inf
    evals: list[dict[str, Any]] = field(default_factory=list)
    memory: dict[str, Any] = field(default_factory=dict)
    # {"step", "peak_gib"} at each logged step of this invocation (the CUDA allocator's peak so far, or the CPU
    # process's peak RSS): the memory curve of the run's curves.png
    memory_curve: list[dict[str, float]] = field(default_factory=list)
    adapter_dir: Optional[str] = None
    checkpoint_dir: Optional[str] = None  # the latest complete checkpoint
    resumed_from: Optional[str] = None
    damaged_checkpoints: list[str] = field(default_factory=list)  # set aside at resume, each with its problem
    backoffs: list[dict[str, Any]] = field(default_factory=list)  # OOM back-off trace

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class NumericError(RuntimeError):
    """The loss stayed NaN/inf: training stops instead of corrupting the weights further."""


def make_accelerator(stack: Stack, micro_batch: int, log_with: Optional[str] = None, project_dir=None,
                     data_seed: int = 0, **overrides):
    """An Accelerator configured by the stack and the launch (DDP kwargs, scheduler stepping). Its accumulation steps
    (the stack's, at `micro_batch`) only describe the run to the engine (DeepSpeed's batch configuration, the launch
    checks): the loop's training step owns the accumulation window (memfit.core.step)."""
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, GradientAccumulationPlugin

    from ..launch.distributed import accelerator_kwargs as launch_kwargs
    from ..launch.distributed import partial_state, reset_accelerator_state

    state = partial_state()  # must be the first PartialState: on a GPU-less launch it builds the gloo group
    kwargs = stack.accelerator_kwargs(stack.context(state.device, state.distributed_type, state.num_processes))
    plugin = GradientAccumulationPlugin(num_steps=stack.accumulation_steps(micro_batch, state.num_processes),
                                        sync_with_dataloader=False)
    reset_accelerator_state(unless_mixed_precision=kwargs.get("mixed_precision", "no"))
    # launch_kwargs sets step_scheduler_with_optimizer=False: accelerate would otherwise step a prepared scheduler
    # once per process at every optimizer step, running the schedule `world` times too fast.
    return Accelerator(gradient_accumulation_plugin=plugin, log_with=log_with, project_dir=project_dir,
                       dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=data_seed),
                       **{**kwargs, **launch_kwargs(stack, state), **overrides})


def _collate(rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    keys = [k for k in ("input_ids", "labels", "position_ids", "attention_mask") if k in rows[0]]
    return {k: torch.as_tensor([r[k] for r in rows], dtype=torch.long) for k in keys}


def make_loader(data, batch_size: int, seed: int, shuffle: bool = True):
    gen = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=shuffle, collate_fn=_collate,
                                       generator=gen, drop_last=False)


def train(model: torch.nn.Module, stack: Stack | str, train_data, config: TrainConfig | None = None, *,
          eval_data=None, accelerator=None, tokenizer=None) -> TrainResult:
    """Train `model` (already transformed by the stack, e.g. from `memfit.load_model`) on packed blocks.
    `tokenizer`: the one the data was tokenised with, saved beside the adapter (default: the model's own)."""
    from tqdm.auto import tqdm

    stack, cfg = Stack.coerce(stack), config or TrainConfig()
    if cfg.output_dir:
        ensure_writable(cfg.output_dir)  # fail now, not after hours of training
    acc = accelerator or make_accelerator(stack, cfg.micro_batch, cfg.log_with, cfg.output_dir, data_seed=cfg.seed)
    with RunLock(cfg.output_dir if cfg.output_dir and acc.is_main_process else None):
        return _train(model, stack, train_data, cfg, eval_data, acc, tqdm, tokenizer)


def _train(model, stack, train_data, cfg, eval_data, acc, tqdm, tokenizer=None) -> TrainResult:
    from accelerate.utils import set_seed

    set_seed(cfg.seed)
    if len(train_data):
        check_block_length(train_data[0]["input_ids"], cfg.seq_len)
    ctx = stack.context(acc.device, acc.distributed_type, acc.num_processes)
    # the accumulation comes from the stack at the configured micro-batch: one source, whatever the Accelerator was
    # built for (the training step owns the window and scales explicitly)
    world = acc.num_processes
    k = stack.accumulation_steps(cfg.micro_batch, world)
    loader = make_loader(train_data, cfg.micro_batch, cfg.seed)
    per_epoch = math.ceil(len(loader) / world)
    total = cfg.max_steps or max(1, math.ceil(cfg.epochs * per_epoch / k))
    optimizer = stack.make_optimizer(model, ctx, cfg.lr, cfg.weight_decay)
    scheduler = lr_scheduler(cfg.scheduler, optimizer, cfg.warmup, total)
    model, optimizer, loader, scheduler = acc.prepare(model, optimizer, loader, scheduler)
    # a caller that started the trackers (the recipe, to log its evaluations before and after) also finishes them
    own_trackers = bool(cfg.log_with) and not acc.trackers
    if own_trackers:
        start_trackers(acc, stack, cfg)

    saver = None
    if cfg.output_dir and cfg.checkpoint_every:
        # everything that changes the result; not the run length, so raising max_steps/epochs continues the run
        run_id = {**dict(stack=stack.spec, seed=cfg.seed, micro_batch=cfg.micro_batch, grad_accum=k, num_processes=world,
                      effective_batch=cfg.micro_batch * k * world, rows=len(train_data), lr=cfg.lr,
                      weight_decay=cfg.weight_decay, warmup=cfg.warmup, scheduler=cfg.scheduler,
                      max_grad_norm=cfg.max_grad_norm), **cfg.run_identity}
        saver = Checkpointer(acc, model, Path(cfg.output_dir) / "checkpoints", cfg.keep_last, run_id)
    try:
        with StopOnSignal() as stop:
            result = _run(model, stack, ctx, acc, k, optimizer, scheduler, loader, total, cfg, saver, eval_data, tqdm,
                          stop, tokenizer)
    finally:
        if saver:
            saver.close()
    if own_trackers:
        finish_trackers(acc)
    return result


def _run(model, stack, ctx, acc, k, optimizer, scheduler, loader, total, cfg, saver, eval_data, tqdm,
         stop: StopOnSignal, tokenizer=None) -> TrainResult:
    world, engine = acc.num_processes, Engine(acc)
    state = (saver.resume(cfg.resume) if saver else None) or TrainState(micro_batch=cfg.micro_batch)
    if state.step:  # resumed: a longer run continues on the schedule over its new total (memfit.training.schedule)
        continue_schedule(scheduler)
    backoff = OOMBackoff(state.micro_batch, cfg.micro_batch * k, num_processes=world, plan_cache=cfg.plan_cache,
                         trace=state.backoffs)
    result = TrainResult(steps=state.step, tokens=state.tokens, losses=list(state.losses), evals=list(state.evals),
                         skipped_steps=state.skipped_steps, nonfinite_steps=state.nonfinite_steps,
                         num_processes=world, effective_batch=cfg.micro_batch * k * world, backoffs=backoff.trace)
    last = saver.latest() if saver else None
    if saver:
        result.resumed_from, result.damaged_checkpoints = saver.resumed_from and str(saver.resumed_from), saver.damaged
    stream, meter, bad = DataStream(loader, state.epoch, state.consumed, cfg.seq_len), Meter(), 0
    saved_at = time.monotonic()
    reset_peak(acc.device)
    bar = tqdm(total=total, initial=state.step, desc="train", disable=not (cfg.progress and acc.is_main_process),
               dynamic_ncols=True)
    model.train()
    for step in range(state.step + 1, total + 1):
        window = stream.take(k)
        out = train_step(model, optimizer, stack, ctx, window, engine=engine, max_grad_norm=cfg.max_grad_norm,
                         scheduler=scheduler, retry=lambda run: backoff.run(step, window, run))
        step_loss = out.loss
        if out.updated:
            bad = 0
            result.skipped_steps += int(out.skipped_by_scaler)
            if out.skipped_by_scaler:
                log.warning("step %d: the fp16 loss scaler skipped the update (gradient overflow)", step)
        else:
            # inf gradients under fp16 are the loss scaler's business; anything else non-finite skipped the update,
            # so the weights, and the checkpoints, stay good
            bad, result.nonfinite_steps = bad + 1, result.nonfinite_steps + 1
            log.warning("step %d: non-finite loss/gradient (%s), update skipped", step, step_loss)
            if bad >= cfg.max_bad_steps:
                good = f"; the last good checkpoint is {last}, resume continues from it" if last else ""
                raise NumericError(f"loss was non-finite for {bad} consecutive steps (last at step {step}); lower "
                                   f"the learning rate, use bf16 instead of fp16, or check the data{good}")
        result.steps, result.tokens = step, result.tokens + out.tokens
        result.losses.append(step_loss)
        rate = meter.update(out.tokens)
        if step % cfg.log_every == 0 or step == total:
            mem = memory_stats(acc.device)
            peak = mem.get("peak_gib", mem.get("peak_rss_gib", 0.0))  # CUDA allocator peak, or the CPU process's RSS
            bar.set_postfix(loss=f"{step_loss:.4f}", tok_s=f"{rate:,.0f}", mem=f"{peak:.2f}G")
            result.memory_curve.append({"step": step, "peak_gib": peak})
            acc.log({"loss": step_loss, "lr": scheduler.get_last_lr()[0], "tokens_per_s": rate,
                     "micro_batch": backoff.micro_batch, "skipped_steps": result.skipped_steps}, step=step)
        bar.update(1)
        if eval_data is not None and cfg.eval_every and (step % cfg.eval_every == 0 or step == total):
            result.evals.append({"step": step, **evaluate(model, eval_data, cfg, acc)})
            log_evaluation(acc, result.evals[-1], step)
        signum = stop.requested(acc)  # SIGINT/SIGTERM: this step is done; save it and stop
        if saver and bad == 0 and (signum or step % cfg.checkpoint_every == 0 or step == total
                                   or _minutes_passed(acc, saved_at, cfg.checkpoint_minutes)):
            saved_at = time.monotonic()
            last = saver.save(TrainState(step, stream.epoch, stream.consumed, backoff.micro_batch, result.tokens,
                                         result.losses, result.skipped_steps, result.nonfinite_steps, result.evals,
                                         backoff.trace), model)
        if signum:
            bar.close()
            raise TrainingInterrupted(signum, step, last)
    bar.close()
    result.micro_batch, result.grad_accum = backoff.micro_batch, backoff.grad_accum
    result.seconds, result.tokens_per_s = meter.seconds, meter.mean_rate
    result.memory, result.checkpoint_dir = memory_stats(acc.device), str(last) if last else None
    if cfg.output_dir and cfg.save_adapter:
        result.adapter_dir = save_trained(model, acc, Path(cfg.output_dir) / "adapter", tokenizer)
    return result


def _minutes_passed(acc, since: float, minutes: Optional[float]) -> bool:
    """True on every rank when any rank's clock says so (every rank must take part in a save, and clocks drift)."""
    if minutes is None:
        return False
    due = torch.tensor(float(time.monotonic() - since >= 60 * minutes), device=acc.device)
    return acc.reduce(due, reduction="sum").item() > 0


def evaluate(model, eval_data, cfg: TrainConfig, acc) -> dict[str, Any]:
    from ..evaluation import has_label_mask, perplexity

    # chat pieces carry the label mask training used: score the answer tokens, as the run's held-out numbers do
    res = perplexity(model, eval_data, context_length=cfg.eval_context, stride=cfg.eval_stride,
                     batch_size=cfg.eval_batch_size, accelerator=acc, only_labels=has_label_mask(eval_data))
    model.train()
    return res.to_dict()
