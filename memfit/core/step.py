"""The one training step: forward, loss through the stack's `compute_loss` hook, backward through the engine, the
optimizer step. The training loop (memfit.training.loop), the planner's probes (memfit.plan.probe.run_probe) and the
auto search's timing (time_steps over run_probe) all run `train_step`, so what the planner measures and times is
the step that trains.

Why it lives in core/ and not in training/: plan/ sits below training/ (the loop imports the planner's cache and OOM
helpers), and both call this step; core/ is below both, and the step needs nothing above it: the Stack's hooks and an
engine that is duck-typed (an accelerate Accelerator or none), so core imports no accelerate.

Loss convention (DEVELOPERS.md): `compute_loss` returns (summed token NLL, predicted tokens); the step normalises once,
by the predicted tokens of the whole window (all micro-batches, all processes), so a window of k micro-batches makes
exactly the gradient of one batch of k times the rows.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch

from .loss import count_predicted_tokens
from .processes import distributed_type_name

Batch = dict[str, torch.Tensor]


def autocast_for(stack, ctx):
    """The one autocast rule: the stack's compute dtype (declared by the strategy that decides it, e.g. 'bf16'), around
    the forward; an fp32 stack runs without autocast."""
    dtype = stack.compute_dtype
    if dtype in (torch.bfloat16, torch.float16):
        return torch.autocast(ctx.device.type, dtype=dtype)
    return contextlib.nullcontext()


class Engine:
    """How gradients leave the loss and how the processes agree, for one process (`accelerator=None`: loss.backward())
    or under an accelerate Accelerator (DDP, FSDP, DeepSpeed), through public APIs only: the window's micro-batches
    but the last run in `accelerator.no_sync(model)`, so DDP/FSDP synchronise gradients exactly once per window.

    `agree=False` (the planner's probes): no collective inside the step. A probe that OOMs on one rank must not leave
    the others waiting in an all-reduce of the loss (memfit.plan.sharded); tokens and loss then stay per process."""

    def __init__(self, accelerator=None, agree: bool = True):
        self.accelerator, self.agree = accelerator, agree
        kind = getattr(getattr(accelerator, "state", None), "distributed_type", "NO")
        self.deepspeed = distributed_type_name(kind) == "DEEPSPEED"

    @property
    def world(self) -> int:
        return self.accelerator.num_processes if self.accelerator is not None and self.agree else 1

    def sum_over_processes(self, value: torch.Tensor) -> torch.Tensor:
        return self.accelerator.reduce(value, reduction="sum") if self.world > 1 else value

    def micro_batch_context(self, model, last: bool):
        """Gradient sync only on the window's last micro-batch (DeepSpeed decides it in backward, below)."""
        if self.accelerator is None or last or self.deepspeed:
            return contextlib.nullcontext()
        return self.accelerator.no_sync(model)

    def backward(self, loss: torch.Tensor, model, last: bool) -> None:
        """The only backward of a training step. `loss` is already scaled to its share of the window's gradient."""
        acc = self.accelerator
        if acc is None:
            loss.backward()
        elif self.deepspeed:
            # DeepSpeed's engine (the prepared model) syncs and steps inside its own calls: its public API is driven
            # with this window's boundary; scale_wrt_gas=False because the scale is already explicit here.
            model.set_gradient_accumulation_boundary(last)
            model.backward(loss, scale_wrt_gas=False)
            if last:
                model.step()
        else:
            # accelerator.backward applies the fp16 loss scaler and divides by its configured accumulation steps; the
            # step owns the window, so that division is undone to keep the scale explicit
            acc.backward(loss * acc.gradient_accumulation_steps)

    def zero_grad(self, model) -> None:
        """From zero gradients: a window retried after an OOM must not keep the failed attempt's (DeepSpeed's engine
        takes no arguments)."""
        model.zero_grad() if self.deepspeed else model.zero_grad(set_to_none=True)

    def clip(self, model, max_norm: float) -> Optional[float]:
        if self.accelerator is None:
            return float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm))
        norm = self.accelerator.clip_grad_norm_(model.parameters(), max_norm)  # None under DeepSpeed (it clips)
        return None if norm is None else float(norm)

    @property
    def scales_loss(self) -> bool:
        """An fp16 loss scaler: it handles inf gradients itself (skips the update, lowers the scale)."""
        return getattr(self.accelerator, "scaler", None) is not None

    @property
    def step_was_skipped(self) -> bool:
        return bool(getattr(self.accelerator, "optimizer_step_was_skipped", False))


@dataclass
class StepOutcome:
    loss: float  # the window's summed NLL / its predicted tokens (over all processes when the engine agrees)
    tokens: int  # predicted tokens of the window (all processes when the engine agrees)
    grad_norm: Optional[float] = None  # before clipping; None without clipping or under DeepSpeed
    updated: bool = False  # the optimizer stepped (False: a non-finite loss or gradient skipped the update)
    skipped_by_scaler: bool = False  # the fp16 loss scaler skipped it (gradient overflow)


def forward_backward(model, stack, ctx, batch: Batch, engine: Engine, scale: torch.Tensor, last: bool) -> torch.Tensor:
    """One micro-batch's forward and backward; returns its summed NLL, detached.

    Why a function of its own: the autograd graph (its nodes are many small host allocations made between the
    activations) dies when this returns. Kept alive by a loop variable into the next micro-batch's forward, those nodes
    pin the freed activations' heap apart, the next forward cannot reuse it and the process grows: on the CPU peer job
    +0.5 GiB of peak RSS over HF Trainer (benchmarks/results/peer_cpu_*)."""
    with engine.micro_batch_context(model, last), stack.step_context(ctx):
        with autocast_for(stack, ctx):
            nll, _ = stack.compute_loss(model, batch, ctx)
        engine.backward(nll * scale, model, last)
    return nll.detach()


def backward_window(model, stack, ctx, micro_batches: list[Batch], engine: Engine, scale: torch.Tensor) -> torch.Tensor:
    """Forward and backward over one window's micro-batches from zero gradients; returns the summed NLL (fp64)."""
    engine.zero_grad(model)
    total = torch.zeros((), device=ctx.device, dtype=torch.float64)
    for i, batch in enumerate(micro_batches):
        total += forward_backward(model, stack, ctx, batch, engine, scale, last=i == len(micro_batches) - 1).double()
    return total


def train_step(model, optimizer, stack, ctx, micro_batches: list[Batch], *, engine: Optional[Engine] = None,
               max_grad_norm: Optional[float] = None, scheduler=None,
               retry: Optional[Callable[[Callable[[list[Batch]], Any]], Any]] = None) -> StepOutcome:
    """One optimizer step over `micro_batches` (one accumulation window).

    `retry(run)`: runs `run(micro_batches)` and may re-run it in other pieces of the same rows (the loop's OOM back-off,
    memfit.training.backoff); `run` starts from zero gradients. The update is applied only when the loss and the
    gradient norm are finite (inf gradients under an fp16 scaler are the scaler's business): a skipped update leaves
    the weights as they were and `updated` False; what to do about it is the caller's policy."""
    engine = engine or Engine()
    counts = torch.tensor([count_predicted_tokens(b) for b in micro_batches], device=ctx.device, dtype=torch.float64)
    tokens = engine.sum_over_processes(counts.sum())
    # DDP/FSDP/ZeRO average gradients over processes: `world` undoes it, so the gradient is sum(NLL) / sum(tokens)
    scale = engine.world / tokens.clamp_min(1).float()
    run = lambda pieces: backward_window(model, stack, ctx, pieces, engine, scale)  # noqa: E731
    nll = retry(run) if retry is not None else run(micro_batches)
    out = StepOutcome((engine.sum_over_processes(nll) / tokens).item(), int(tokens.item()))
    if math.isfinite(out.loss) and max_grad_norm:
        out.grad_norm = engine.clip(model, max_grad_norm)
    if math.isfinite(out.loss) and (out.grad_norm is None or math.isfinite(out.grad_norm) or engine.scales_loss):
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        out.updated, out.skipped_by_scaler = True, engine.step_was_skipped
    optimizer.zero_grad(set_to_none=True)
    return out
