"""Activation offloading: checkpointed layer inputs live in host memory, not on the GPU.

Gradient checkpointing still keeps one hidden-state tensor per layer on the device (layers x tokens x hidden). Here
each checkpointed layer's input is copied to host memory while the next layers compute, and copied back one layer
ahead of the backward pass (prefetch), so device memory per sample approaches a single layer's recompute working set.
The recompute restores the RNG and autocast state of the forward (dropout masks match).

Host memory comes from an arena that is reused step after step: a fresh 2.5 GiB pageable buffer per layer and step
costs more in page faults than the copy itself, and torch's pinned caching allocator rounds every block up to a
power of two. On CUDA the copies run on a worker thread and a side stream: a copy into pageable memory blocks the
calling thread, which would otherwise stop queueing the next layers' kernels.

Composition with checkpointing is declared, not patched: this strategy provides the stack's `layer_checkpoint` hook
(memfit.core.protocol), and gc's transform asks the stack how its checkpointed layers run.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from typing import ClassVar, Optional

import torch
from pydantic import BaseModel, Field

from ..core.protocol import PHASE_OFFLOAD, StackError, strategy_config
from ..core.registry import register_strategy

_ALIGN = 512  # bytes: keeps every view aligned for any dtype and for fast DMA


class HostArena:
    """Host buffers handed out front to back within a step and all reused by the next one (`rewind`)."""

    def __init__(self, max_bytes: float, pin: bool = False):
        self.max_bytes, self.pin = max_bytes, pin
        self.chunks: list[list] = []  # [uint8 buffer, bytes used this step]
        self.generation = 0  # bumped by rewind: a view from an older generation may have been overwritten

    @property
    def reserved(self) -> int:
        return sum(c[0].numel() for c in self.chunks)

    def rewind(self) -> None:
        self.generation += 1
        for c in self.chunks:
            c[1] = 0

    def view(self, shape, dtype: torch.dtype) -> torch.Tensor:
        nbytes = torch.Size(shape).numel() * dtype.itemsize
        size = -(-nbytes // _ALIGN) * _ALIGN
        fits = [c for c in self.chunks if c[0].numel() - c[1] >= size]
        if not fits:
            if self.reserved + size > self.max_bytes:  # drop what this step has not touched (sizes of old probes)
                self.chunks = [c for c in self.chunks if c[1]]
            if self.reserved + size > self.max_bytes:
                raise torch.OutOfMemoryError(
                    f"offloaded activations would exceed the host-memory cap of {self.max_bytes / 2**30:.1f} GiB "
                    f"(ActivationOffload max_host_gib)")
            fits = [[torch.empty(size, dtype=torch.uint8, pin_memory=self.pin), 0]]
            self.chunks += fits
        chunk = min(fits, key=lambda c: c[0].numel() - c[1])  # best fit: big chunks stay free for big tensors
        start, chunk[1] = chunk[1], chunk[1] + size
        return chunk[0][start:start + nbytes].view(dtype).view(shape)


class _Saved:
    """One parked layer input: its host copy (pending while `copied` runs) and, once fetched, its device copy."""

    def __init__(self, host: torch.Tensor, device: torch.device, generation: int, copied: Optional[Future] = None):
        self.host, self.device, self.generation, self.copied = host, device, generation, copied
        self.on_device: Optional[torch.Tensor] = None
        self.ready: Optional[torch.cuda.Event] = None


class Offloader:
    """Per-model runtime state: the arena, the parked inputs of the current step in forward order, the copy worker."""

    def __init__(self, max_host_bytes: float, pin: bool = False):
        self.arena = HostArena(max_host_bytes, pin)
        self.parked: list[_Saved] = []
        self.stream: Optional[torch.cuda.Stream] = None
        self.worker: Optional[ThreadPoolExecutor] = None
        self.hooks: list = []  # handles of the hooks installed on the model, removed by restore_model

    def new_step(self) -> None:
        """A forward begins: the previous step's backward is over, its host buffers can be written again."""
        self.parked.clear()
        self.arena.rewind()

    def _cuda(self):
        if self.stream is None:
            self.stream = torch.cuda.Stream()
            self.worker = ThreadPoolExecutor(1, thread_name_prefix="memfit-offload")
        return self.stream, self.worker

    def park(self, x: torch.Tensor) -> _Saved:
        host = self.arena.view(x.shape, x.dtype)
        if x.device.type != "cuda":  # CPU runs (tests): a plain copy
            host.copy_(x.detach())
            return _Saved(host, x.device, self.arena.generation)
        stream, worker = self._cuda()
        produced = torch.cuda.Event()
        produced.record()  # x is complete once the current stream reaches this point
        x = x.detach()  # the closure holds x until its copy is done: its memory cannot be handed out before

        def copy() -> None:
            with torch.cuda.device(x.device), torch.cuda.stream(stream):
                stream.wait_event(produced)
                host.copy_(x)
                stream.synchronize()  # pageable destination: done when the bytes are in host memory

        return _Saved(host, x.device, self.arena.generation, worker.submit(copy))

    def fetch(self, saved: _Saved) -> None:
        """Start copying a parked input back to the device (no-op when already there or on CPU)."""
        if saved.on_device is not None or saved.device.type != "cuda":
            return
        self._check_current(saved)
        stream, worker = self._cuda()
        saved.on_device = torch.empty(saved.host.shape, dtype=saved.host.dtype, device=saved.device)
        allocated, saved.ready = torch.cuda.Event(), torch.cuda.Event()
        allocated.record()  # the new block may still be in use by kernels queued before it was freed

        def copy() -> None:  # one worker runs jobs in order: this input's copy to the host is already done
            with torch.cuda.device(saved.device), torch.cuda.stream(stream):
                stream.wait_event(allocated)
                saved.on_device.copy_(saved.host, non_blocking=True)
                saved.ready.record(stream)

        saved.copied = worker.submit(copy)

    def _check_current(self, saved: _Saved) -> None:
        if saved.generation != self.arena.generation:
            raise RuntimeError("offloaded activations were overwritten: run backward before the next forward "
                               "(ActivationOffload keeps one step's layer inputs)")

    def take(self, saved: _Saved) -> torch.Tensor:
        if saved.device.type != "cuda":
            self._check_current(saved)
            return saved.host.clone()
        self.fetch(saved)
        saved.copied.result()
        torch.cuda.current_stream().wait_event(saved.ready)
        x, saved.on_device = saved.on_device, None
        return x

    def prefetch_before(self, saved: _Saved) -> None:
        """Backward runs layers in reverse: start bringing back the input of the layer before this one."""
        i = next((k for k, s in enumerate(self.parked) if s is saved), None)
        if i:
            self.fetch(self.parked[i - 1])

    def checkpoint(self, run_fn, hidden, *args):
        if not torch.is_tensor(hidden):
            raise TypeError("activation offload expects the layer's hidden states as its first positional argument")
        if not torch.is_grad_enabled():  # evaluation in train mode: nothing will be recomputed
            return run_fn(hidden, *args)
        return _OffloadedLayer.apply(self, run_fn, hidden, *args)


class _OffloadedLayer(torch.autograd.Function):
    @staticmethod
    def forward(ctx, off: Offloader, run_fn, hidden, *args):
        ctx.off, ctx.run_fn, ctx.args = off, run_fn, args
        dev = hidden.device.type
        ctx.autocast = (torch.is_autocast_enabled(dev), torch.get_autocast_dtype(dev)) if dev != "meta" else (False, None)
        ctx.cpu_rng = torch.get_rng_state()
        ctx.cuda_rng = torch.cuda.get_rng_state(hidden.device) if dev == "cuda" else None
        ctx.saved = off.park(hidden)
        off.parked.append(ctx.saved)
        with torch.no_grad():
            out = run_fn(hidden, *args)
        if not torch.is_tensor(out):
            raise TypeError(f"activation offload supports layers returning a tensor, got {type(out).__name__}")
        return out

    @staticmethod
    def backward(ctx, grad_out):
        off = ctx.off
        off.prefetch_before(ctx.saved)
        hidden = off.take(ctx.saved).detach().requires_grad_(True)
        dev = hidden.device
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else [], device_type=dev.type):
            torch.set_rng_state(ctx.cpu_rng)
            if ctx.cuda_rng is not None:
                torch.cuda.set_rng_state(ctx.cuda_rng, dev)
            with torch.enable_grad(), torch.autocast(dev.type, dtype=ctx.autocast[1], enabled=ctx.autocast[0]):
                out = ctx.run_fn(hidden, *ctx.args)
        torch.autograd.backward(out, grad_out)
        return (None, None, hidden.grad) + (None,) * len(ctx.args)


def _host_memory_bytes() -> float:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return float("inf")


@register_strategy(aliases=("offload",))
class ActivationOffload(BaseModel):
    model_config = strategy_config()
    name: ClassVar[str] = "offload"
    phase: ClassVar[int] = PHASE_OFFLOAD
    speed_cost: ClassVar[float] = 1.2  # PCIe copies, partly hidden behind compute
    requires: ClassVar[frozenset[str]] = frozenset({"cuda"})  # offloading CPU to CPU saves nothing

    max_host_gib: Optional[float] = Field(None, gt=0)  # default: 80% of the host memory available at load time
    pin: bool = False  # page-locked arena (faster copies; the VM we measured on refused large page-locked sizes)

    def describe(self) -> str:
        kind = "pinned" if self.pin else "pageable"
        return f"checkpointed layer inputs offloaded to a reused {kind} host arena, prefetched one layer ahead in backward"

    def check_launch(self, stack, launch) -> list[str]:
        if launch.find_unused_parameters:
            raise StackError("find_unused_parameters=True with 'offload': the offloaded layers recompute inside "
                             "backward, so DDP marks their parameters ready twice and stops. Leave "
                             "find_unused_parameters off (every LoRA parameter is used in every step)")
        if launch.distributed_type == "DEEPSPEED" and (launch.offload_optimizer or launch.offload_param):
            return ["activation offload and ZeRO-Offload both pin host memory and share the PCIe link: cap the "
                    "activations with 'offload:max_host_gib=...' so both fit in RAM"]
        return []

    def check(self, stack) -> None:
        if "gc" not in stack:
            raise StackError("offload moves the inputs of checkpointed layers to the host: add 'gc' to the stack "
                             "(e.g. 'lora+gc+offload')")

    def layer_checkpoint(self, model, ctx):
        # The declared route (memfit.core.protocol HOOKS): gc's transform asks the stack how checkpointed layers
        # run, and gets this model's offloader, which parks each layer's input in the host arena.
        return self._offloader(model).checkpoint

    def transform_model(self, model, ctx):
        off = self._offloader(model)
        embeddings = model.get_input_embeddings()
        # A training forward begins once the previous step's backward is over: rewind this model's arena then.
        # Per model (not per process), so two models with their own stacks never rewind each other's buffers.
        off.hooks.append(embeddings.register_forward_pre_hook(
            lambda m, i: off.new_step() if torch.is_grad_enabled() else None))
        # The first layer's input must require grad, or autograd never calls back into the offloaded layers
        # (the embeddings are frozen under LoRA): the same reason HF has enable_input_require_grads.
        off.hooks.append(embeddings.register_forward_hook(lambda m, i, o: o.requires_grad_(True)))
        return model

    def restore_model(self, model, ctx):
        # gc's restore_model (after this one: reverse phase order) takes its checkpoint function off the layers
        off = model.__dict__.pop("_memfit_offloader")
        for hook in off.hooks:
            hook.remove()
        return model

    def _offloader(self, model) -> Offloader:
        """This model's offloader, made on first use (by gc's transform, through layer_checkpoint)."""
        if "_memfit_offloader" not in model.__dict__:
            cap = self.max_host_gib * 2**30 if self.max_host_gib else 0.8 * _host_memory_bytes()
            model._memfit_offloader = Offloader(cap, self.pin)
        return model._memfit_offloader

    def estimate_memory(self, est, ctx):
        # the input being recomputed and the next one, prefetched, are still on the device; the rest is in host memory
        est.set_term("checkpointed_inputs", "token", lambda e: float(2 * e.compute_bytes * e.hidden), self.name)
        est.set_term("offloaded_inputs", "host", lambda e: float(e.checkpointed_layers * e.compute_bytes * e.hidden),
                     self.name)
