"""One capacity probe: a real training step (forward + backward + optimizer step) plus an eval forward at size b.

Memory is read through a meter: `CudaMeter` uses the CUDA caching allocator (real OOMs, optionally under a reduced
per-process memory fraction that implements the safety margin); `SimulatedMeter` is the CPU stand-in used by the
tests: it counts parameters + gradients + optimizer state + live saved-for-backward tensors and raises a real
`torch.OutOfMemoryError` when they exceed a budget, so leaks between probes change the answer.
"""

from __future__ import annotations

import contextlib
import gc
import time
import weakref
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from ..core.stack import Stack
from ..core.step import Engine, autocast_for, train_step
from ..core.wrapping import unwrap_peft
from .oom import OOM, is_oom, oom_summary  # noqa: F401  (OOM and is_oom: benchmarks import them from here)


@dataclass
class Probe:
    micro_batch: int
    fits: bool
    peak_bytes: Optional[float] = None
    seconds: float = 0.0
    tokens_per_s: Optional[float] = None
    error: Optional[str] = None


@dataclass
class Timing:
    micro_batch: int
    steps: int  # steps run, warm-up included
    tokens_per_s: Optional[float]  # tokens of the timed steps / their seconds; None when a step did not fit
    error: Optional[str] = None


TIMING_WARMUP, TIMING_STEPS = 2, 3


def time_steps(step: Callable[[], Probe], micro_batch: int, warmup: int = TIMING_WARMUP,
               timed: int = TIMING_STEPS) -> Timing:
    """The steady training speed at one size: `warmup` untimed steps, then `timed` steps whose mean step time gives
    tokens/s. A search probe's time is mostly compilation for compiled stacks (every new shape recompiles: the H200
    frontier had liger+compile at 1,122 tok/s from one probe); repeated steps of one shape hit the compile caches."""
    speeds = []
    for i in range(warmup + timed):
        p = step()
        if not p.fits or not p.tokens_per_s:
            return Timing(micro_batch, i + 1, None, p.error or "a timing step did not fit")
        if i >= warmup:
            speeds.append(p.tokens_per_s)
    # every step has the same tokens, so tokens / mean seconds is the harmonic mean of the per-step speeds
    return Timing(micro_batch, warmup + timed, len(speeds) / sum(1.0 / v for v in speeds) if speeds else None)


def probe_line(p: Probe, size: str = "micro-batch", stack: str = "") -> str:
    """The progress line of one probe: size, fits or OOM, peak, seconds."""
    peak = f"peak {p.peak_bytes / 2**30:.2f} GiB" if p.peak_bytes else (p.error or "")
    verdict = "fits" if p.fits else "OOM"
    return f"  probe {stack + ' ' if stack else ''}{size} {p.micro_batch}: {verdict}, {peak}, {p.seconds:.1f} s"


class _Scoped:
    """Meters are `with` blocks: probes run inside one, and whatever the meter does to the process ends with it."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


class CudaMeter(_Scoped):
    """Real device memory. `margin` is enforced by the allocator itself: set_per_process_memory_fraction(1-margin)
    makes anything above the budget a genuine OOM, so the search needs no guessing about headroom. The cap is set
    on entering the meter's `with` block and lifted on leaving it, whatever happened inside."""

    def __init__(self, device: torch.device, margin: float = 0.0):
        self.device, self.margin = device, margin
        self.total = torch.cuda.get_device_properties(device).total_memory

    def __enter__(self):
        torch.cuda.set_per_process_memory_fraction(1.0 - self.margin, self.device)
        return self

    def __exit__(self, *exc) -> None:
        torch.cuda.set_per_process_memory_fraction(1.0, self.device)

    @property
    def budget(self) -> float:
        return self.total * (1.0 - self.margin)

    def reset(self) -> None:
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(self.device)

    def measure(self, model, optimizer):
        return contextlib.nullcontext()

    def baseline(self) -> float:
        """What stays allocated between probes: weights, adapters, optimizer state."""
        return float(torch.cuda.memory_allocated(self.device))

    def peak(self) -> float:
        torch.cuda.synchronize(self.device)
        return float(torch.cuda.max_memory_allocated(self.device))


def _local_bytes(t: torch.Tensor) -> int:
    """Bytes this process holds: a sharded (FSDP2 DTensor) parameter, gradient or moment counts its local shard."""
    local = t.to_local() if hasattr(t, "to_local") else t
    return local.numel() * local.element_size()


class SimulatedMeter(_Scoped):
    """CPU stand-in for a GPU with `budget` bytes (see module docstring)."""

    def __init__(self, budget: float):
        self.budget = float(budget)
        self.live = 0.0  # bytes of saved tensors still alive (including any leaked by earlier probes)
        self.tracked: dict[int, int] = {}  # storage address -> bytes, for every saved storage still alive
        self.high = 0.0
        self._static = 0.0
        # ZeRO-3/FSDP2 gather inside the step: an OOM raised mid-step on one rank would leave the others waiting in
        # a collective, so with `defer` the step completes and its OOM is raised at the end (memfit.plan.sharded)
        self.defer = False

    def reset(self) -> None:
        gc.collect()
        self.high = self.live + self._static

    def _static_bytes(self, model, optimizer) -> float:
        params = [p for p in model.parameters()]
        total = sum(_local_bytes(p) for p in params)
        total += sum(_local_bytes(p.grad) for p in params if p.grad is not None)
        for state in optimizer.state.values():
            total += sum(_local_bytes(t) for t in state.values() if torch.is_tensor(t))
        return float(total)

    def _charge(self, nbytes: float) -> None:
        self.live += nbytes
        self.high = max(self.high, self.live + self._static)
        if self.live + self._static > self.budget and not self.defer:
            raise torch.OutOfMemoryError(f"simulated OOM: {self.live + self._static:.0f} > {self.budget:.0f} bytes")

    @contextlib.contextmanager
    def measure(self, model, optimizer):
        self._static = self._static_bytes(model, optimizer)

        def pack(t: torch.Tensor):
            storage = t.untyped_storage()
            ptr = storage.data_ptr()
            # count each live storage once, across probes too: a cached buffer saved by every probe is one buffer
            # sharded engines (defer): a view of a gathered weight is skipped like the weight itself; FSDP2 resizes
            # that storage between steps instead of freeing it, so its charge would never be returned
            weight = isinstance(t, torch.nn.Parameter) or (self.defer and isinstance(t._base, torch.nn.Parameter))
            if ptr not in self.tracked and not weight:
                self.tracked[ptr] = storage.nbytes()
                weakref.finalize(storage, self._free, ptr)
                self._charge(self.tracked[ptr])
            # detach: returning `t` itself would make a saved *output* own its grad_fn, a C++-side cycle that
            # Python's gc cannot break when a step dies before backward (the graph would leak).
            return t.detach()

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            yield
        self._static = max(self._static, self._static_bytes(model, optimizer))
        self.high = max(self.high, self.live + self._static)
        if self.defer and self.high > self.budget:
            raise torch.OutOfMemoryError(f"simulated OOM (at the step's end): {self.high:.0f} > {self.budget:.0f} bytes")

    def baseline(self) -> float:
        return self.live + self._static

    def _free(self, ptr: int) -> None:
        self.live -= self.tracked.pop(ptr, 0)

    def peak(self) -> float:
        return self.high


class TimingMeter(_Scoped):
    """For time_steps: no memory bookkeeping between steps. CudaMeter.reset empties the allocator cache before every
    step, so each timed step would pay for fresh device allocations that a training loop does not; the search has
    already settled that the size fits."""

    budget = float("inf")

    def reset(self) -> None:
        pass

    def measure(self, model, optimizer):
        return contextlib.nullcontext()

    def peak(self) -> float:
        return 0.0


def random_batch(micro_batch: int, seq_len: int, vocab: int, device, packed: bool = False) -> dict[str, torch.Tensor]:
    """`packed`: two documents per block with restarting position_ids, as the data pipeline packs them, so the
    probe takes training's attention path (transformers builds the block-causal mask from the restarts)."""
    ids = torch.randint(0, vocab, (micro_batch, seq_len), device=device)
    batch = {"input_ids": ids, "labels": ids}
    if packed and seq_len >= 4:
        half = seq_len // 2
        pos = torch.cat([torch.arange(half), torch.arange(seq_len - half)]).to(device)
        batch["position_ids"] = pos.expand(micro_batch, seq_len)
    return batch


def run_probe(model, optimizer, stack: Stack, ctx, meter, micro_batch: int, seq_len: int,
              eval_batch_size: int = 0, packed: bool = False, engine: Optional[Engine] = None) -> Probe:
    """Train one step at `micro_batch` (memfit.core.step.train_step: the loop's step) and report whether it fit and
    its peak. Frees everything it made. `engine`: the one the probes step through (memfit.plan.sharded: the run's
    Accelerator, without collectives inside the step); default one process, plain backward."""
    vocab = unwrap_peft(getattr(model, "module", model)).config.vocab_size  # .module: inside a DDP wrapper
    meter.reset()
    start = time.perf_counter()
    batch = None
    try:
        batch = random_batch(micro_batch, seq_len, vocab, ctx.device, packed)
        with meter.measure(model, optimizer):
            # lr=0: the optimizer step allocates its state without changing the weights
            train_step(model, optimizer, stack, ctx, [batch], engine=engine or Engine(agree=False))
            if eval_batch_size:
                with torch.no_grad(), autocast_for(stack, ctx):
                    stack.compute_loss(model, random_batch(eval_batch_size, seq_len, vocab, ctx.device), ctx)
        peak = meter.peak()
        if ctx.device.type == "cuda":
            torch.cuda.synchronize(ctx.device)
        secs = time.perf_counter() - start
        return Probe(micro_batch, True, peak, secs, micro_batch * seq_len / secs)
    except Exception as exc:  # noqa: BLE001 - only OOMs are answers, anything else is re-raised
        if not is_oom(exc):
            raise
        return Probe(micro_batch, False, None, time.perf_counter() - start, error=oom_summary(exc))
    finally:
        # Drop every reference the failed step may hold (the exception's traceback pins the whole graph).
        batch = None
        optimizer.zero_grad(set_to_none=True)
        meter.reset()
