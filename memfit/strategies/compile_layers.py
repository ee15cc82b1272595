"""torch.compile of the parts of each decoder layer: fuses their elementwise work (RMSNorm, rotary, SiLU*up, LoRA
dropout and scaling) into a few kernels, which is most of what eager mode spends beyond the matmuls.

Per layer part (attention, MLP, norms), not the whole model or the layer itself: the layers are identical, so one graph
per part serves all of them, and the loop, the chunked loss and everything that wraps a layer stays eager. That last
point matters: transformers (from 5.2x) puts the checkpoint call inside the layer's forward, where compiling the layer
would trace checkpointing and activation offload's autograd Function instead of running them. Recomputes run the
compiled parts too. Measured on the H100 (benchmarks/results/README.md): 1.55x tokens/s for bf16 LoRA, and less memory,
because inductor recomputes norms and SiLU in backward instead of saving them (61.9 -> 49.8 GiB at 32 x 512 tokens).
The price is compilation in the first step (~20 s) and once more when the micro-batch first changes.
"""

from __future__ import annotations

from typing import ClassVar, Literal, Optional

from pydantic import BaseModel

from ..core.protocol import PHASE_COMPILE, strategy_config
from ..core.registry import register_strategy
from .gradient_checkpointing import decoder_layers

# Every layer module is a distinct object with the same code: dynamo may specialise a graph per layer (e.g. on its
# layer index) before it shares one, and the planner's probes change the micro-batch. The default limit (8) would
# silently fall back to eager for the later layers, so it is raised to cover 1 graph per layer of an 8B model and more.
RECOMPILE_LIMIT = 128


@register_strategy
class CompileLayers(BaseModel):
    model_config = strategy_config()
    name: ClassVar[str] = "compile"
    phase: ClassVar[int] = PHASE_COMPILE

    mode: Literal["default", "max-autotune-no-cudagraphs"] = "default"  # CUDA graphs are out: shapes change per probe
    backend: str = "inductor"  # "aot_eager" traces the same graphs without code generation (tests, debugging)
    dynamic: Optional[bool] = None  # None: specialise on the first shape, go dynamic once a second one is seen

    def describe(self) -> str:
        return f"torch.compile each decoder layer's attention, MLP and norms ({self.backend}, mode={self.mode})"

    def runtime_needs(self) -> dict:
        # every probe size and sequence length is a new shape: dynamo's default limit would fall back to eager
        return {"dynamo_recompile_limit": RECOMPILE_LIMIT}

    def transform_model(self, model, ctx):
        kwargs = {"backend": self.backend, "dynamic": self.dynamic}
        if self.backend == "inductor":
            kwargs["mode"] = self.mode
        for layer in decoder_layers(model):
            for part in layer.children():
                part.compile(**kwargs)  # in place: parameter names, state dicts and peft's save paths are unchanged
        return model

    def estimate_memory(self, est, ctx):
        est.fused_elementwise = self.backend == "inductor"
