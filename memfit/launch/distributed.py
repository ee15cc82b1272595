"""Stacks against the engine `accelerate launch` picked (DDP, DeepSpeed ZeRO, FSDP), and the engine settings memfit's
loop relies on. A stack that cannot work fails before the model is loaded, with the fix in the message; one that works
but wastes something gets a note. Order (launch_configs/README.md): `partial_state()` first, `check_launch(stack)`
before loading the model, `accelerator_kwargs(stack, state)` into `Accelerator(...)`.

Measured on CPU/gloo (torch 2.13, accelerate 1.15, deepspeed 0.19.8; tests/launch/test_distributed.py): DDP with
find_unused_parameters=False, static_graph=False trains LoRA + 'gc' (non-reentrant) and LoRA + 'offload' exactly like
one process, with and without accumulation. static_graph=True crashes on the second micro-batch of a window (reducer
INTERNAL ASSERT expect_autograd_hooks_: static graph vs accelerate's no_sync); find_unused_parameters=True crashes with
'offload' ("Expected to mark a variable ready only once": it recomputes layers inside backward).
"""

from __future__ import annotations

import os
import sys
from dataclasses import fields, replace
from typing import Any, Mapping

from ..core.launch import Launch, env_flag, has_accelerator
from ..core.protocol import StackError, hooks_of
from ..core.processes import distributed_type_name


def check_stack_for_distributed(stack, distributed_type: str = "NO", **facts: Any) -> list[str]:
    """Raise memfit.StackError when `stack` cannot train under the engine; return notes for choices that work but
    waste memory or time. `facts` are `Launch` fields (zero_stage=3, offload_optimizer="cpu", fsdp_version=2, ...)."""
    from ..core.stack import Stack

    stack = Stack.coerce(stack)
    unknown = sorted(set(facts) - {f.name for f in fields(Launch)})
    if unknown:
        raise TypeError(f"unknown launch facts {unknown}; known: {[f.name for f in fields(Launch)]}")
    launch = Launch(distributed_type, **facts)
    notes = stack.check_launch(launch)  # each strategy's own rules first: their messages name the precise fix
    _check_engine(stack, launch)
    ddp_kwargs(stack, launch)  # raises for DDP settings known to crash
    return notes


def check_launch(stack, accelerator=None) -> list[str]:
    """`check_stack_for_distributed` for the current launch: from the Accelerator if there is one, else from the
    environment `accelerate launch` set (so it can run before the model is loaded)."""
    launch = Launch.from_accelerator(accelerator) if accelerator is not None else Launch.from_env()
    if launch.distributed_type == "DEEPSPEED" and _transformers_uses_zero_init():
        launch = replace(launch, zero3_init=True)
    values = {f.name: getattr(launch, f.name) for f in fields(Launch) if f.name != "distributed_type"}
    return check_stack_for_distributed(stack, launch.distributed_type, **values)


def _transformers_uses_zero_init() -> bool:
    """accelerate registers a DeepSpeed config with transformers whenever an Accelerator is built under DeepSpeed,
    whatever zero3_init_flag says: from then on, a ZeRO-3 from_pretrained runs inside deepspeed.zero.Init."""
    from transformers.integrations import is_deepspeed_zero3_enabled

    return is_deepspeed_zero3_enabled()


def _check_engine(stack, launch: Launch) -> None:
    """What the engine itself requires of any stack (strategy-specific rules live in each strategy's check_launch)."""
    from ..core.stack import spec_of

    optimizer = next((s for s in stack if "make_optimizer" in hooks_of(s)), None)
    mine = f"the stack's optimizer ({spec_of(optimizer)})" if optimizer is not None else "torch AdamW"
    if launch.distributed_type == "DEEPSPEED" and launch.deepspeed_optimizer:
        raise StackError(f"the DeepSpeed config has an \"optimizer\" section, but memfit builds {mine} from the "
                         f"stack and accelerate refuses both at once: delete the \"optimizer\" section from the "
                         f"DeepSpeed JSON (launch_configs/deepspeed_zero*.json have none)")
    if launch.distributed_type == "DEEPSPEED" and launch.offload_optimizer and launch.force_ds_cpu_optimizer:
        raise StackError(f"offload_optimizer needs DeepSpeed's own CPU Adam, but memfit passes {mine} (DeepSpeed "
                         f"refuses it: zero_force_ds_cpu_optimizer). Set \"zero_force_ds_cpu_optimizer\": false in the "
                         f"DeepSpeed JSON to step it on the CPU (slow), or turn offload_optimizer off")
    if launch.distributed_type == "FSDP" and (launch.fsdp_version or 1) == 1 and stack.trains_adapters_only \
            and launch.fsdp_use_orig_params is False:
        raise StackError("FSDP1 with use_orig_params: false flattens each decoder layer into one parameter, which "
                         "must be all-trainable or all-frozen; LoRA mixes both. Use launch_configs/fsdp.yaml "
                         "(FSDP2), or set fsdp_use_orig_params: true")


def ddp_kwargs(stack, launch: Launch | None = None):
    """DistributedDataParallelKwargs(find_unused_parameters=False, static_graph=False): every trainable parameter is
    used in every forward and 'gc' is non-reentrant, so neither option is needed; both crash in cases memfit uses
    (module docstring), and a launch forcing one of them there gets a StackError (from the strategy concerned, or
    here for static_graph with accumulation)."""
    from accelerate.utils import DistributedDataParallelKwargs

    launch = launch or Launch()
    if launch.static_graph and launch.grad_accum > 1:
        raise StackError(f"static_graph=True with gradient accumulation ({launch.grad_accum} micro-batches per "
                         f"step): DDP's static graph breaks on accelerate's no_sync micro-batches. Leave "
                         f"static_graph off; non-reentrant checkpointing ('gc') does not need it")
    return DistributedDataParallelKwargs(find_unused_parameters=bool(launch.find_unused_parameters),
                                         static_graph=bool(launch.static_graph))


def accelerator_kwargs(stack, state=None) -> dict[str, Any]:
    """Keyword arguments make_accelerator must pass to Accelerator(...) under any launch.

    step_scheduler_with_optimizer=False: accelerate otherwise steps a prepared LR scheduler once per *process* at
    every optimizer step (it assumes schedules counted in single-process steps); memfit counts optimizer steps,
    so on 2 processes the cosine schedule would end half-way through the run."""
    kwargs: dict[str, Any] = {"step_scheduler_with_optimizer": False}
    kind = distributed_type_name(getattr(state, "distributed_type", "NO"))
    if kind in ("MULTI_GPU", "MULTI_CPU"):
        kwargs["kwargs_handlers"] = [ddp_kwargs(stack)]
    return kwargs


def _launched(env: Mapping[str, str]) -> bool:
    return int(env.get("LOCAL_RANK", "-1")) != -1 or int(env.get("WORLD_SIZE", "1") or 1) > 1


def wants_cpu_group(environ: Mapping[str, str] | None = None, has_accelerator: bool | None = None) -> bool:
    """True when this process was started as one of several (torchrun / accelerate launch) on a machine without
    GPUs: accelerate then needs cpu=True, or each process silently trains alone on the whole data set."""
    env = os.environ if environ is None else environ
    has_accelerator = has_accelerator() if has_accelerator is None else has_accelerator
    return _launched(env) and not env_flag(env, "ACCELERATE_USE_DEEPSPEED") and not has_accelerator


def partial_state(**kwargs):
    """accelerate's PartialState, with the process group built on CPU when there is no GPU.

    accelerate 1.15 builds a gloo group for processes started by torchrun only if told cpu=True (ACCELERATE_USE_CPU,
    which `accelerate launch` sets for the one-process 'simple' launcher only); otherwise each process reports
    num_processes == 1. DeepSpeed without a GPU needs backend='gloo' named explicitly. The first PartialState of a
    process wins, so call this before anything else creates one."""
    from accelerate import PartialState

    if _launched(os.environ) and not has_accelerator():
        if env_flag(os.environ, "ACCELERATE_USE_DEEPSPEED"):
            kwargs.setdefault("backend", "gloo")
        else:  # wants_cpu_group()
            kwargs.setdefault("cpu", True)
    return PartialState(**kwargs)


def reset_accelerator_state(unless_mixed_precision: str | None = None) -> None:
    """Forget the process-wide AcceleratorState (the one place memfit calls accelerate's private reset), keeping the
    process group (PartialState): the next Accelerator is built from scratch. With `unless_mixed_precision`, only
    when the existing state has another precision (benchmarks and tests run stacks of several precisions in one
    process; an Accelerator of the same precision may be reused as it is)."""
    from accelerate.state import AcceleratorState

    if not AcceleratorState._shared_state:
        return
    if unless_mixed_precision is None or AcceleratorState().mixed_precision != unless_mixed_precision:
        AcceleratorState._reset_state(reset_partial_state=False)


def join_launch(quiet_others: bool = True):
    """For the `memfit` commands: under `accelerate launch` / torchrun (LOCAL_RANK or WORLD_SIZE > 1 in the
    environment) join the launch's process group (partial_state: gloo without a GPU), put this rank on its own GPU,
    and with `quiet_others` send every other rank's stdout to /dev/null so one report prints (stderr stays: a rank's
    error must show). Returns the PartialState, or None for a plain one-process run (nothing is created)."""
    if not _launched(os.environ):
        return None
    import torch

    state = partial_state()
    if state.device.type == "cuda":
        torch.cuda.set_device(state.device)  # before any CUDA allocation: else every rank's first tensor lands on GPU 0
    if quiet_others and not state.is_main_process:
        sys.stdout = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - for the rest of the process
    return state
