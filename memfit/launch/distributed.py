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

import json
import os
from dataclasses import dataclass, fields, replace
from typing import Any, Mapping, Optional

from ..core.processes import distributed_type_name
from ..core.protocol import DTYPE_NAMES, StackError


@dataclass(frozen=True)
class Launch:
    """What the launch decided that a stack can conflict with. Build it with `from_env`, `from_accelerator` or
    directly (tests, planning for a launch that has not happened yet)."""

    distributed_type: str = "NO"  # accelerate DistributedType name: NO, MULTI_CPU, MULTI_GPU, DEEPSPEED, FSDP
    num_processes: int = 1
    grad_accum: int = 1
    # DeepSpeed
    zero_stage: Optional[int] = None
    offload_optimizer: Optional[str] = None  # "cpu" | "nvme" | None
    offload_param: Optional[str] = None
    deepspeed_optimizer: bool = False  # the DeepSpeed config has an "optimizer" section
    force_ds_cpu_optimizer: bool = True  # DeepSpeed's zero_force_ds_cpu_optimizer (its default: true)
    zero3_init: bool = False  # deepspeed.zero.Init while loading (accelerate's zero3_init_flag)
    # FSDP
    fsdp_version: Optional[int] = None
    fsdp_use_orig_params: Optional[bool] = None
    fsdp_activation_checkpointing: bool = False
    # DDP choices a user forces (None: memfit decides, see ddp_kwargs)
    find_unused_parameters: Optional[bool] = None
    static_graph: Optional[bool] = None

    def __post_init__(self):  # accept DistributedType members and their str() ("DistributedType.FSDP")
        object.__setattr__(self, "distributed_type", distributed_type_name(self.distributed_type))

    @property
    def sharded_weights(self) -> bool:
        return self.distributed_type == "FSDP" or (self.distributed_type == "DEEPSPEED" and self.zero_stage == 3)

    def with_deepspeed_config(self, config: Mapping[str, Any]) -> "Launch":
        """Fill the DeepSpeed facts from a DeepSpeed JSON config (a dict or the path of one)."""
        if isinstance(config, (str, os.PathLike)):
            with open(config, encoding="utf-8") as f:
                config = json.load(f)
        zero = config.get("zero_optimization", {}) or {}

        def device(section: str) -> Optional[str]:
            dev = (zero.get(section) or {}).get("device")
            return None if dev in (None, "none") else str(dev)

        stage = zero.get("stage", self.zero_stage)
        return replace(self, zero_stage=None if stage in (None, "auto") else int(stage),
                       offload_optimizer=device("offload_optimizer"), offload_param=device("offload_param"),
                       deepspeed_optimizer="optimizer" in config,
                       force_ds_cpu_optimizer=bool(config.get("zero_force_ds_cpu_optimizer", True)))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Launch":
        """The facts `accelerate launch` wrote into the environment: usable before any Accelerator (or model) exists."""
        env = os.environ if environ is None else environ
        world = int(env.get("WORLD_SIZE", "1") or 1)
        flag = lambda key, default="false": _flag(env, key, default)  # noqa: E731
        if flag("ACCELERATE_USE_DEEPSPEED"):
            device = lambda key: None if env.get(key, "none") in ("", "none") else env[key]  # noqa: E731
            launch = cls("DEEPSPEED", world, zero_stage=int(env.get("ACCELERATE_DEEPSPEED_ZERO_STAGE", "2")),
                         zero3_init=flag("ACCELERATE_DEEPSPEED_ZERO3_INIT"),
                         offload_optimizer=device("ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE"),
                         offload_param=device("ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE"))
            config = env.get("ACCELERATE_DEEPSPEED_CONFIG_FILE", "none")
            return launch.with_deepspeed_config(config) if config not in ("", "none") else launch
        if flag("ACCELERATE_USE_FSDP"):
            return cls("FSDP", world, fsdp_version=int(env.get("FSDP_VERSION", "1")),
                       fsdp_use_orig_params=flag("FSDP_USE_ORIG_PARAMS", "true"),
                       fsdp_activation_checkpointing=flag("FSDP_ACTIVATION_CHECKPOINTING"))
        if world > 1:
            return cls("MULTI_GPU" if _has_accelerator() and not flag("ACCELERATE_USE_CPU") else "MULTI_CPU", world)
        return cls("NO", 1)

    @classmethod
    def from_accelerator(cls, accelerator) -> "Launch":
        state = accelerator.state
        kind = distributed_type_name(state.distributed_type)
        launch = cls(kind, accelerator.num_processes, grad_accum=accelerator.gradient_accumulation_steps)
        if kind == "DEEPSPEED" and getattr(state, "deepspeed_plugin", None) is not None:
            plugin = state.deepspeed_plugin
            launch = replace(launch, zero_stage=plugin.zero_stage, zero3_init=bool(plugin.zero3_init_flag))
            return launch.with_deepspeed_config(plugin.deepspeed_config)
        if kind == "FSDP" and getattr(state, "fsdp_plugin", None) is not None:
            plugin = state.fsdp_plugin
            return replace(launch, fsdp_version=getattr(plugin, "fsdp_version", 1),
                           fsdp_use_orig_params=getattr(plugin, "use_orig_params", None),
                           fsdp_activation_checkpointing=bool(getattr(plugin, "activation_checkpointing", False)))
        if kind in ("MULTI_GPU", "MULTI_CPU"):
            handler = getattr(accelerator, "ddp_handler", None)
            if handler is not None:
                launch = replace(launch, find_unused_parameters=handler.find_unused_parameters,
                                 static_graph=handler.static_graph)
        return launch


def check_stack_for_distributed(stack, distributed_type: str = "NO", **facts: Any) -> list[str]:
    """Raise memfit.StackError when `stack` cannot train under the engine; return notes for choices that work but
    waste memory or time. `facts` are `Launch` fields (zero_stage=3, offload_optimizer="cpu", fsdp_version=2, ...)."""
    from ..core.stack import Stack

    stack = Stack.coerce(stack)
    unknown = sorted(set(facts) - {f.name for f in fields(Launch)})
    if unknown:
        raise TypeError(f"unknown launch facts {unknown}; known: {[f.name for f in fields(Launch)]}")
    launch = Launch(distributed_type, **facts)
    notes: list[str] = []
    _check_quantized_weights(stack, launch, notes)
    _check_optimizer(stack, launch, notes)
    _check_fsdp(stack, launch)
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


def _check_quantized_weights(stack, launch: Launch, notes: list[str]) -> None:
    if not launch.sharded_weights:
        return
    engine = "ZeRO-3" if launch.distributed_type == "DEEPSPEED" else f"FSDP{launch.fsdp_version or ''}"
    if "quant8bit" in stack:
        raise StackError(f"quant8bit under {engine}: LLM.int8 weights (int8 tensors with row scales kept beside "
                         f"them) cannot be sharded. Use 'quant4bit:quant_storage=<compute dtype>' instead, or "
                         f"launch with DDP / ZeRO-2 (launch_configs/ddp.yaml, deepspeed_zero2.yaml)")
    q4 = stack.get("quant4bit")
    if q4 is None:
        return
    compute = q4.compute_dtype or DTYPE_NAMES[stack.compute_dtype]
    if q4.quant_storage == compute:
        return
    fix = (f"use 'quant4bit:quant_storage={compute}' (the stack computes in {compute}), e.g. "
           f"'lora+quant4bit:quant_storage=bf16+bf16+gc'")
    if launch.distributed_type == "FSDP":
        why = ("FSDP1 flattens each wrapped layer into one buffer of a single dtype and refuses the mix; FSDP2 "
               "(accelerate 1.15) leaves non-float Params4bit out of sharding, so every GPU keeps all 4-bit weights")
        raise StackError(f"quant4bit stores its packed weights as {q4.quant_storage} under {engine}: {why}. {fix}")
    if launch.zero3_init:  # the documented QLoRA + zero.Init loading path: packed weights in the model dtype
        raise StackError(f"quant4bit stores its packed weights as {q4.quant_storage} while the model loads inside "
                         f"deepspeed.zero.Init (ZeRO-3), which expects them in the model's dtype: {fix}")
    # Loaded before ZeRO-3 partitions it, DeepSpeed 0.19.8 shards uint8 weights too (its all-gathers go by dtype;
    # seen on CPU/gloo), so only a note: the documented recipe stores them in the compute dtype.
    notes.append(f"quant4bit under ZeRO-3 with {q4.quant_storage} storage: sharded, but the documented QLoRA + "
                 f"ZeRO-3 setup stores 4-bit weights in the compute dtype; consider {fix}")


def _check_optimizer(stack, launch: Launch, notes: list[str]) -> None:
    from ..core.stack import spec_of

    if launch.distributed_type != "DEEPSPEED":
        return
    adam8 = stack.get("adam8")
    mine = f"the stack's {'paged ' if adam8 is not None and adam8.paged else ''}" + (
        "8-bit AdamW (adam8)" if adam8 is not None else "AdamW")
    if launch.deepspeed_optimizer:
        raise StackError(f"the DeepSpeed config has an \"optimizer\" section, but memfit builds {mine} from the "
                         f"stack and accelerate refuses both at once: delete the \"optimizer\" section from the "
                         f"DeepSpeed JSON (launch_configs/deepspeed_zero*.json have none)")
    if launch.offload_optimizer:
        if adam8 is not None:
            raise StackError(f"{spec_of(adam8)} under ZeRO-Offload "
                             f"(offload_optimizer={launch.offload_optimizer}): the optimizer state already lives in "
                             f"host memory and is stepped on the CPU, so 8-bit moments and GPU paging save nothing "
                             f"there. Drop 'adam8' from the stack, or turn offload_optimizer off to keep it")
        if launch.force_ds_cpu_optimizer:
            raise StackError("offload_optimizer needs DeepSpeed's own CPU Adam, but memfit passes its torch AdamW "
                             "(DeepSpeed refuses it: zero_force_ds_cpu_optimizer). Set \"zero_force_ds_cpu_optimizer\": "
                             "false in the DeepSpeed JSON to step torch AdamW on the CPU (slow), or turn "
                             "offload_optimizer off")
    if "offload" in stack and (launch.offload_optimizer or launch.offload_param):
        notes.append("activation offload and ZeRO-Offload both pin host memory and share the PCIe link: cap the "
                     "activations with 'offload:max_host_gib=...' so both fit in RAM")
    if adam8 is not None and launch.zero_stage in (1, 2, 3):
        notes.append(f"{mine} under ZeRO-{launch.zero_stage}: DeepSpeed keeps fp32 partitions of the trainable "
                     f"weights and runs the bitsandbytes optimizer on them (an 'untested optimizer' to DeepSpeed; "
                     f"accelerate allows it)")


def _check_fsdp(stack, launch: Launch) -> None:
    if launch.distributed_type != "FSDP":
        return
    if launch.fsdp_activation_checkpointing and "gc" in stack:
        raise StackError("fsdp_activation_checkpointing and the stack's 'gc' would checkpoint every decoder layer "
                         "twice (two recomputes per backward): set fsdp_activation_checkpointing: false in the "
                         "accelerate config (launch_configs/fsdp.yaml does) and keep 'gc'")
    if (launch.fsdp_version or 1) != 1 or not stack.trains_adapters_only:
        return
    if launch.fsdp_use_orig_params is False:
        raise StackError("FSDP1 with use_orig_params: false flattens each decoder layer into one parameter, which "
                         "must be all-trainable or all-frozen; LoRA mixes both. Use launch_configs/fsdp.yaml "
                         "(FSDP2), or set fsdp_use_orig_params: true")
    mixed = "quant4bit" in stack or "quant8bit" in stack or any(
        getattr(s, "name", "") == "mixed_precision" and getattr(s, "weights", "") == "compute" for s in stack)
    if mixed:
        raise StackError("FSDP1 flattens each decoder layer into one buffer of a single dtype, but LoRA adapters "
                         "train in fp32 beside frozen bf16/fp16/4-bit weights. Use FSDP2 (fsdp_version: 2, "
                         "launch_configs/fsdp.yaml), which shards parameter by parameter")


def ddp_kwargs(stack, launch: Launch | None = None):
    """DistributedDataParallelKwargs(find_unused_parameters=False, static_graph=False): every trainable parameter is
    used in every forward and 'gc' is non-reentrant, so neither option is needed; both crash in cases memfit uses
    (module docstring), and a launch forcing one of them there gets a StackError."""
    from accelerate.utils import DistributedDataParallelKwargs

    launch = launch or Launch()
    if launch.find_unused_parameters and "offload" in stack:
        raise StackError("find_unused_parameters=True with 'offload': the offloaded layers recompute inside "
                         "backward, so DDP marks their parameters ready twice and stops. Leave "
                         "find_unused_parameters off (every LoRA parameter is used in every step)")
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


def _has_accelerator() -> bool:
    import torch

    return torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())


def _flag(env: Mapping[str, str], key: str, default: str = "false") -> bool:
    return env.get(key, default).lower() in ("1", "true", "yes")


def _launched(env: Mapping[str, str]) -> bool:
    return int(env.get("LOCAL_RANK", "-1")) != -1 or int(env.get("WORLD_SIZE", "1") or 1) > 1


def wants_cpu_group(environ: Mapping[str, str] | None = None, has_accelerator: bool | None = None) -> bool:
    """True when this process was started as one of several (torchrun / accelerate launch) on a machine without
    GPUs: accelerate then needs cpu=True, or each process silently trains alone on the whole data set."""
    env = os.environ if environ is None else environ
    has_accelerator = _has_accelerator() if has_accelerator is None else has_accelerator
    return _launched(env) and not _flag(env, "ACCELERATE_USE_DEEPSPEED") and not has_accelerator


def partial_state(**kwargs):
    """accelerate's PartialState, with the process group built on CPU when there is no GPU.

    accelerate 1.15 builds a gloo group for processes started by torchrun only if told cpu=True (ACCELERATE_USE_CPU,
    which `accelerate launch` sets for the one-process 'simple' launcher only); otherwise each process reports
    num_processes == 1. DeepSpeed without a GPU needs backend='gloo' named explicitly. The first PartialState of a
    process wins, so call this before anything else creates one."""
    from accelerate import PartialState

    if _launched(os.environ) and not _has_accelerator():
        if _flag(os.environ, "ACCELERATE_USE_DEEPSPEED"):
            kwargs.setdefault("backend", "gloo")
        else:  # wants_cpu_group()
            kwargs.setdefault("cpu", True)
    return PartialState(**kwargs)
