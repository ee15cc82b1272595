"""Activation offloading: checkpointed layer inputs live in host memory, not on the GPU.

Gradient checkpointing still keeps one hidden-state tensor per layer on the device (layers x tokens x hidden). Here
each checkpointed layer's input is copied to host memory on a side stream while the next layers compute, and
copied back one layer ahead of the backward pass (prefetch), so device memory per sample approaches a single
layer's recompute working set. The recompute restores the RNG and autocast state of the forward (dropout masks match).
"""

from __future__ import annotations

import contextlib
import os
import weakref
from typing import ClassVar, Optional

import torch
from pydantic import BaseModel, Field

from ..protocol import PHASE_OFFLOAD, StackError, strategy_config
from ..registry import register_strategy
from .gradient_checkpointing import checkpointed_layers


class _Saved:
    """One layer input parked on the host, and the event that says its copy back to the device is done."""

    def __init__(self, host: torch.Tensor, device: torch.device):
        self.host, self.device = host, device
        self.on_device: Optional[torch.Tensor] = None
        self.ready: Optional[torch.cuda.Event] = None


_OFFLOADERS: "weakref.WeakSet[Offloader]" = weakref.WeakSet()


class Offloader:
    """Per-model runtime state: streams, the stack of parked inputs of the current step, the host-memory cap."""

    def __init__(self, max_host_bytes: float, pin: bool = False):
        self.max_host_bytes, self.pin = max_host_bytes, pin
        self.parked: list[_Saved] = []
        self.host_bytes = 0
        self.stream: Optional[torch.cuda.Stream] = None
        _OFFLOADERS.add(self)

    def reset(self) -> None:
        """Forget a step that died half-way (an OOM): its parked host tensors are released."""
        self.parked.clear()
        self.host_bytes = 0

    def _side_stream(self):
        if self.stream is None:
            self.stream = torch.cuda.Stream()
        return self.stream

    def park(self, x: torch.Tensor) -> _Saved:
        self.host_bytes += x.numel() * x.element_size()
        if self.host_bytes > self.max_host_bytes:
            self.host_bytes = 0
            raise torch.OutOfMemoryError(f"offloaded activations would exceed the host-memory cap of "
                                         f"{self.max_host_bytes / 2**30:.1f} GiB (ActivationOffload max_host_gib)")
        if x.device.type != "cuda":  # CPU runs (tests): nothing to move, keep a private copy
            return _Saved(x.detach().clone(), x.device)
        # Pinned buffers come from torch's caching host allocator, which rounds every block up to a power of two
        # (a 1.3 GiB layer input takes 2 GiB) and page-locks it: on the H100 VM that exhausted the driver's page
        # tables at ~5 GiB. Pageable, exact-size buffers are the default; `pin=True` trades that for faster copies.
        host = torch.empty(x.shape, dtype=x.dtype, pin_memory=self.pin)
        stream = self._side_stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            host.copy_(x.detach(), non_blocking=True)
        x.record_stream(stream)  # the allocator must not reuse x before the copy has read it
        return _Saved(host, x.device)

    def fetch(self, saved: _Saved) -> None:
        """Start copying a parked input back to the device (no-op when already there)."""
        if saved.on_device is not None or saved.device.type != "cuda":
            return
        stream = self._side_stream()
        with torch.cuda.stream(stream):
            saved.on_device = saved.host.to(saved.device, non_blocking=True)
            saved.ready = torch.cuda.Event()
            saved.ready.record(stream)

    def take(self, saved: _Saved) -> torch.Tensor:
        if saved.device.type != "cuda":
            return saved.host
        self.fetch(saved)
        torch.cuda.current_stream().wait_event(saved.ready)
        x = saved.on_device
        x.record_stream(torch.cuda.current_stream())
        saved.on_device = None
        return x

    def prefetch_before(self, saved: _Saved) -> None:
        """Backward runs layers in reverse: start bringing back the input of the layer before this one."""
        i = next((k for k, s in enumerate(self.parked) if s is saved), None)
        if i:
            self.fetch(self.parked[i - 1])

    def checkpoint(self, run_fn, hidden, *args):
        if not torch.is_tensor(hidden):
            raise TypeError("activation offload expects the layer's hidden states as its first positional argument")
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
        if ctx.saved in off.parked:
            off.parked.remove(ctx.saved)
            off.host_bytes -= hidden.numel() * hidden.element_size()
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

    max_host_gib: Optional[float] = Field(None, gt=0)  # default: 80% of the host memory available at load time
    pin: bool = False  # page-locked host buffers (faster, asynchronous copies; see Offloader.park)

    def describe(self) -> str:
        kind = "pinned" if self.pin else "pageable"
        return f"checkpointed layer inputs offloaded to {kind} host memory, prefetched one layer ahead in backward"

    def check(self, stack) -> None:
        if "gc" not in stack:
            raise StackError("offload moves the inputs of checkpointed layers to the host: add 'gc' to the stack "
                             "(e.g. 'lora+gc+offload')")

    def transform_model(self, model, ctx):
        cap = self.max_host_gib * 2**30 if self.max_host_gib else 0.8 * _host_memory_bytes()
        off = Offloader(cap, self.pin)
        for layer in checkpointed_layers(model):
            layer._gradient_checkpointing_func = off.checkpoint
        # The first layer's input must require grad, or autograd never calls back into the offloaded layers
        # (the embeddings are frozen under LoRA): the same reason HF has enable_input_require_grads.
        model.get_input_embeddings().register_forward_hook(lambda m, i, o: o.requires_grad_(True))
        model._memfit_offloader = off
        return model

    @contextlib.contextmanager
    def step_context(self, ctx):
        for off in list(_OFFLOADERS):
            off.reset()
        try:
            yield
        finally:
            for off in list(_OFFLOADERS):
                off.reset()

    def estimate_memory(self, est, ctx):
        est.offloaded = True
