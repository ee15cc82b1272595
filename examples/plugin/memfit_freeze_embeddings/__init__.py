"""A memfit strategy shipped as its own package: freeze the input embeddings of a full fine-tune.

The input embedding is the largest single matrix of a small Llama (SmolLM2-135M: 28 M of 135 M parameters) and its
gradient is sparse anyway; freezing it saves its gradient and both AdamW moments."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel

from memfit import StackError
from memfit.core.protocol import PHASE_ADAPTER, strategy_config


class FreezeEmbeddings(BaseModel):
    model_config = strategy_config()
    name: ClassVar[str] = "freeze_embeddings"
    phase: ClassVar[int] = PHASE_ADAPTER + 5  # after adapters would have frozen the base (it refuses them anyway)

    def describe(self) -> str:
        return "input embeddings frozen (no gradient, no optimizer state)"

    def check(self, stack) -> None:
        if stack.trains_adapters_only:
            raise StackError("freeze_embeddings with an adapter strategy: the base (embeddings included) is already "
                             "frozen; drop 'freeze_embeddings'")

    def check_launch(self, stack, launch) -> list[str]:
        if launch.distributed_type == "FSDP" and (launch.fsdp_version or 1) == 1 and launch.fsdp_use_orig_params is False:
            raise StackError("freeze_embeddings under FSDP1 with use_orig_params: false: the frozen embedding would "
                             "be flattened with trainable weights into one parameter. Set fsdp_use_orig_params: true "
                             "or use FSDP2 (launch_configs/fsdp.yaml)")
        return []

    def transform_model(self, model, ctx):
        model.get_input_embeddings().weight.requires_grad_(False)
        return model

    def estimate_memory(self, est, ctx) -> None:
        def saved(e) -> float:
            if e.trainable_params is not None:  # something else decides what trains
                return 0.0
            per_param = e.trainable_bytes if e.trainable_bytes is not None else e.weight_bytes
            optimizer = e.optimizer_bytes_per_param or 2 * per_param
            return -float(e.vocab * e.hidden * (per_param + optimizer))

        est.set_term("frozen_embeddings", "static", saved, self.name)
