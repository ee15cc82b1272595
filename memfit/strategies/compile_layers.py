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

from ..core.families import FAMILIES
from ..core.protocol import PHASE_COMPILE, strategy_config
from ..core.registry import register_strategy
from ._model_parts import decoder_layers

FUSED_BACKWARD_FP32_SAVING = 1.8  # hidden-size fp32 tensors per token compiled backward saves (see estimate_memory)

# Every layer module is a distinct object with the same code: dynamo may specialise a graph per layer (e.g. on its
# layer index) before it shares one, and the planner's probes change the micro-batch. The default limit (8) would
# silently fall back to eager for the later layers, so it is raised to cover 1 graph per layer of an 8B model and more.
RECOMPILE_LIMIT = 128


@register_strategy
class CompileLayers(BaseModel):
    model_config = strategy_config()
    name: ClassVar[str] = "compile"
    phase: ClassVar[int] = PHASE_COMPILE
    speed_cost: ClassVar[float] = 0.8  # fused kernels (H100: part of the 2.7x stack)
    # inductor on CPU compiles for minutes per shape: the search only tries it on GPUs
    requires: ClassVar[frozenset[str]] = frozenset({"cuda"})

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

    def restore_model(self, model, ctx):
        # nn.Module.compile only sets _compiled_call_impl; None is the eager call again. Dynamo's code cache is
        # process state, not the model's: whoever loads the next model decides whether to reset it.
        for layer in decoder_layers(model):
            for part in layer.children():
                part._compiled_call_impl = None
        return model

    def estimate_memory(self, est, ctx):
        if self.backend != "inductor":
            return
        # norms and SiLU are recomputed in backward, not saved: only what the eager Llama layer would save changes
        # (a strategy that replaced a term, e.g. tiled_mlp's MLP, owns those bytes)
        est.facts["elementwise_recomputed"] = True
        # the family's baseline terms, not another strategy's replacement: compiled RMSNorm keeps only the rsqrt per
        # norm (two per layer, four in Gemma), the input is recomputed
        if est.terms["norms"].owner == est.family:
            norms = FAMILIES[est.family].norms_per_layer
            est.set_term("norms", "layer_attn", lambda e: norms * 4.0, self.name)
        if est.terms["mlp"].owner == est.family:  # gate and up; silu(gate) / gelu(gate) is recomputed
            est.set_term("mlp", "layer_mlp", lambda e: e.compute_bytes * 2.0 * e.intermediate, self.name)
        # norm backward's fp32 intermediates are fused away in either recompute phase (H100: seed + cce at 128 and
        # offload + tiled MLP at 800, both ~1.8 hidden-size fp32 tensors per token below eager beyond the saved norms)
        est.set_term("recompute_saving", "working", lambda e: FUSED_BACKWARD_FP32_SAVING * 4 * e.hidden, self.name)
