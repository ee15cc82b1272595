"""8-bit AdamW (block-wise quantized moments) from bitsandbytes, optionally paged to host memory under pressure."""

from __future__ import annotations

import warnings
from typing import ClassVar

from pydantic import BaseModel

from ..core.protocol import PHASE_OPTIMIZER, StackError, bitsandbytes_available, strategy_config
from ..core.registry import register_strategy


@register_strategy(aliases={"adam8": {}, "adamw8bit": {}, "paged_adam8": {"paged": True}})
class Optimizer8bit(BaseModel):
    model_config = strategy_config()
    name: ClassVar[str] = "adam8"
    phase: ClassVar[int] = PHASE_OPTIMIZER

    paged: bool = False
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8

    def describe(self) -> str:
        return f"{'paged ' if self.paged else ''}AdamW with 8-bit block-wise moments (bitsandbytes)"

    def spec_item(self) -> str:
        base = "paged_adam8" if self.paged else "adam8"
        rest = self.model_dump(exclude_defaults=True, exclude={"paged"})
        return base + (":" + ",".join(f"{k}={v}" for k, v in rest.items()) if rest else "")

    def check_launch(self, stack, launch) -> list[str]:
        if launch.distributed_type != "DEEPSPEED":
            return []
        if launch.offload_optimizer:
            raise StackError(f"{self.spec_item()} under ZeRO-Offload (offload_optimizer={launch.offload_optimizer}): "
                             f"the optimizer state already lives in host memory and is stepped on the CPU, so 8-bit "
                             f"moments and GPU paging save nothing there. Drop 'adam8' from the stack, or turn "
                             f"offload_optimizer off to keep it")
        if launch.zero_stage in (1, 2, 3):
            return [f"the stack's {'paged ' if self.paged else ''}8-bit AdamW (adam8) under ZeRO-{launch.zero_stage}: "
                    f"DeepSpeed keeps fp32 partitions of the trainable weights and runs the bitsandbytes optimizer on "
                    f"them (an 'untested optimizer' to DeepSpeed; accelerate allows it)"]
        return []

    def check(self, stack) -> None:
        if not bitsandbytes_available():
            raise StackError("adam8 needs bitsandbytes, which is not installed: pip install 'memfit[gpu]', or "
                             "drop 'adam8' to use torch AdamW")

    def make_optimizer(self, params, ctx, lr, weight_decay):
        import bitsandbytes as bnb

        paged = self.paged
        if paged and not ctx.on_cuda:
            warnings.warn("paged optimizer states need CUDA unified memory; using unpaged AdamW8bit on this device",
                          stacklevel=2)
            paged = False
        cls = bnb.optim.PagedAdamW8bit if paged else bnb.optim.AdamW8bit
        return cls(params, lr=lr, betas=self.betas, eps=self.eps, weight_decay=weight_decay)

    def estimate_memory(self, est, ctx):
        # two moments at 1 byte each + fp32 absmax per 256-value block; bnb keeps tensors < 4096 values in fp32
        est.set_optimizer_bytes_per_param(2 * (1 + 4 / 256), small_tensor_bytes=8)
