"""The launch description a strategy's `check_launch` hook receives: what `accelerate launch` decided (engine, world
size, ZeRO stage and offload, FSDP flags, forced DDP options). A plain data type, so strategies can read it without
importing memfit.launch; memfit.launch.distributed builds it from the environment or an Accelerator."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from typing import Any, Mapping, Optional

from .processes import distributed_type_name


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
        flag = lambda key, default="false": env_flag(env, key, default)  # noqa: E731
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
            return cls("MULTI_GPU" if has_accelerator() and not flag("ACCELERATE_USE_CPU") else "MULTI_CPU", world)
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


def has_accelerator() -> bool:
    import torch

    return torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())


def env_flag(env: Mapping[str, str], key: str, default: str = "false") -> bool:
    return env.get(key, default).lower() in ("1", "true", "yes")


def refuse_fsdp1_mixed_dtypes(stack, launch: Launch) -> None:
    """For strategies that keep frozen weights outside fp32 (quantized or compute-dtype weights): FSDP1 flattens a
    layer into one buffer of one dtype, so those weights cannot sit beside fp32 adapters there."""
    from .protocol import StackError

    if launch.distributed_type == "FSDP" and (launch.fsdp_version or 1) == 1 and stack.trains_adapters_only:
        raise StackError("FSDP1 flattens each decoder layer into one buffer of a single dtype, but LoRA adapters "
                         "train in fp32 beside frozen bf16/fp16/4-bit weights. Use FSDP2 (fsdp_version: 2, "
                         "launch_configs/fsdp.yaml), which shards parameter by parameter")
