"""What the device adds to the analytic memory model (memfit/plan/memory.py) for `memfit estimate --device`.

The baseline and the strategies' terms describe the training step's tensors, as the planner's probes see them
(the CUDA allocator, or the CPU meter). Whole-device questions differ by device, and these terms say how:

  cuda  workspace      cuBLAS/cuBLASLt workspaces and the caching allocator's block rounding and slack (the
                       baseline's 512 MiB, kept: calibrated on H100 peaks)
        cuda_context   the CUDA context and loaded kernels: on the card, outside torch's allocator (so outside the
                       planner's probes; its margin absorbs it). Measured on the H100 image (torch 2.11+cu130,
                       driver 580, lazy module loading): the card's used memory minus torch.cuda.memory_reserved() in
                       a fresh process is 0.60 GiB after the first CUDA call and 0.67 GiB once cuBLAS has run a bf16
                       matmul (benchmarks/gpu_wheel_quiet.sh; benchmarks/results/h100-2026-12-05)
  cpu   workspace      removed: no cuBLAS, no caching allocator (freed tensors go back to malloc)
        host terms     folded into the device total: "host" memory IS the device (activation_offload saves nothing)
        process RSS    the interpreter and libraries (torch, transformers, peft, accelerate, datasets imported):
                       PROCESS_RUNTIME_GIB, reported beside the total (the run's RSS), not budgeted: the CPU planner's
                       budget counts the step's tensors, as a GPU's would
The compute dtype is the stack's on both (autocast runs on CPU too); fp32 unless a mixed_precision strategy sets it.
"""
from __future__ import annotations

from ..core.units import GiB
from .memory import MemoryEstimate, estimate

CUDA_CONTEXT_GIB = 0.67  # measured, see the module docstring (was an assumed 0.5)
PROCESS_RUNTIME_GIB = 0.51  # measured: ru_maxrss after importing the five libraries (torch 2.13 CPU, 2026-12)


def for_device(est: MemoryEstimate, device: str) -> MemoryEstimate:
    """`est` with the device's own terms (module docstring); owner = the device."""
    if device == "cuda":
        est.set_term("cuda_context", "static", lambda e: CUDA_CONTEXT_GIB * GiB, "cuda")
        return est
    est.terms.pop("workspace", None)
    for name, term in list(est.terms.items()):
        if term.kind == "host":
            est.set_term(name, "token", term.bytes, f"{term.owner} (host = device on cpu)")
    return est


def device_estimate(stack, config, seq_len: int, ctx) -> MemoryEstimate:
    """The analytic estimate for `stack` with the terms of `ctx.device`'s type."""
    return for_device(estimate(stack, config, seq_len, ctx), ctx.device.type)
