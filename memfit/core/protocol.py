"""The one hook protocol every memory strategy speaks, built-in or plugin.

A strategy is a small validated config object (a pydantic model) that implements any subset of the hook
points below. The stack calls each hook on every strategy that defines it, in the strategy's `phase` order,
so composition never depends on the order the user listed them in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Iterable, Optional, Protocol, runtime_checkable

import torch

if TYPE_CHECKING:
    from .stack import Stack

# Hook points, in the order a training run reaches them.
HOOKS = (
    "check",  # (stack) -> None; raise StackError naming the conflict and the fix
    # () -> dict of process-wide settings the strategy needs (keys: memfit.runtime.NEEDS, e.g.
    # {"dynamo_recompile_limit": 128}); memfit.runtime.configure_runtime applies the union of every stack's, once.
    "runtime_needs",
    "model_kwargs",  # (ctx) -> dict merged into from_pretrained/from_config kwargs
    "transform_model",  # (model, ctx) -> model (peft wrap, checkpointing, dtype hygiene)
    # (model, ctx) -> callable(run_fn, *args): how checkpointed decoder layers run instead of torch's non-reentrant
    # checkpoint, e.g. with their saved input parked in host memory   [exclusive]. The checkpointing strategy asks
    # for it (Stack.layer_checkpoint) while it transforms; the provider keeps its per-model state on the model.
    "layer_checkpoint",
    "make_optimizer",  # (params, ctx, lr, weight_decay) -> torch.optim.Optimizer   [exclusive]
    "accelerator_kwargs",  # (ctx) -> dict merged into accelerate.Accelerator(...)
    "compute_loss",  # (model, batch, ctx) -> (nll_sum, n_tokens)                     [exclusive]
    "step_context",  # (ctx) -> context manager wrapped around forward+backward
    "estimate_memory",  # (estimate, ctx) -> None, edits the analytic MemoryEstimate in place
    # (model, ctx) -> model: undo this strategy's transform_model (Stack.remove_model calls these in reverse phase
    # order). A strategy whose transform cannot be undone (q4/q8 replace the weights) leaves it out, and
    # Stack.remove_model then refuses the stack with a StackError.
    "restore_model",
    "check_launch",  # (stack, launch: memfit.core.launch.Launch) -> list[str] notes; raise StackError naming the fix
    "accumulation_steps",  # (micro_batch, num_processes) -> int micro-batches per optimizer step  [exclusive]
)
# Hooks where two providers would silently overwrite each other: at most one strategy may claim each.
EXCLUSIVE_HOOKS = frozenset({"make_optimizer", "compute_loss", "accumulation_steps", "layer_checkpoint"})

# Phases: the canonical application order. Loading decisions first, then dtype, adapters,
# checkpointing, offload, loss, compilation (of the modules the earlier phases left), optimizer, step schedule.
PHASE_LOAD, PHASE_DTYPE, PHASE_ADAPTER, PHASE_CHECKPOINT, PHASE_OFFLOAD = 10, 20, 30, 40, 50
PHASE_LOSS, PHASE_COMPILE, PHASE_OPTIMIZER, PHASE_SCHEDULE = 60, 65, 70, 80


class StackError(ValueError):
    """An impossible or meaningless strategy combination; the message names the conflict and the fix."""


@dataclass
class Context:
    """What hooks may know about the run besides their own config."""

    stack: "Stack"
    compute_dtype: torch.dtype = torch.float32
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    distributed_type: str = "NO"  # accelerate's DistributedType name: NO, MULTI_GPU, MULTI_CPU, DEEPSPEED, FSDP
    num_processes: int = 1
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def on_cuda(self) -> bool:
        return self.device.type == "cuda"


@runtime_checkable
class Strategy(Protocol):
    """Structural type of a strategy. Only `name`, `phase` and `describe` are required; hooks are optional, and so
    are the declared attributes below (the stack reads them through `declared`, with these defaults)."""

    name: ClassVar[str]
    phase: ClassVar[int]
    shorthand: ClassVar[str | None]  # the field a trailing spec number sets ('ga8' -> steps=8); None: no shorthand
    freezes_base: ClassVar[bool]  # True: only the strategy's adapters train (the base weights are frozen)
    # the field that limits the strategy to N decoder layers (gc's `layers`; None there: every layer), so the auto
    # search can try partial versions without knowing the strategy; None: all or nothing
    layer_subset: ClassVar[str | None]
    # the field holding the effective batch the strategy accumulates to (ga's `effective_batch`), so the recipe can plan
    # for that target and add the strategy to a stack without naming it; None: not an accumulation target
    accumulation_target: ClassVar[str | None]
    autocast_dtype: torch.dtype | None  # the dtype the stack computes in, if this strategy decides it
    # What the auto search (memfit.plan.auto) needs to know, declared by each strategy; plugins that declare
    # nothing get AUTO_DEFAULTS: an exact, cost-free candidate with no requirements.
    lossiness: ClassVar[int]  # EXACT, or how lossy: LOSSY_MOMENTS < LOSSY_WEIGHTS_8BIT < LOSSY_WEIGHTS_4BIT
    quality_note: ClassVar[str]  # one line on what the loss costs (shown in the auto report)
    speed_cost: ClassVar[float]  # prior step-time factor (1.0 = free, 1.3 = 30 % slower); orders probes only
    requires: ClassVar[frozenset[str]]  # of REQUIREMENTS: "cuda", "bitsandbytes"
    auto_candidate: ClassVar[bool]  # False: not a memory/speed choice (the fine-tune method, the schedule)

    def describe(self) -> str: ...


# The optional declared attributes and their defaults: the stack reads nothing else off a strategy by name.
DECLARED_DEFAULTS: dict[str, Any] = {"shorthand": None, "freezes_base": False, "autocast_dtype": None,
                                     "layer_subset": None, "accumulation_target": None}


def declared(strategy: Any, attribute: str) -> Any:
    """A declared attribute of a strategy (class or instance), or its protocol default."""
    return getattr(strategy, attribute, DECLARED_DEFAULTS[attribute])


def effective_batch_target(strategies: Iterable[Any]) -> Optional[int]:
    """The effective batch a stack's accumulation strategy is asked to reach (None: fixed steps or none)."""
    for s in strategies:
        if field_name := declared(s, "accumulation_target"):
            return getattr(s, field_name, None)
    return None


def steps_to_reach(effective_batch: int, micro_batch: int, num_processes: int = 1) -> int:
    """Accumulation steps so micro_batch x steps x processes reaches at least `effective_batch` (at least 1): the one
    place this arithmetic lives (the ga strategy, the planner and the OOM back-off all use it)."""
    return max(1, -(-effective_batch // (micro_batch * num_processes)))


# Lossiness levels, in the order the auto search accepts them (lower first, exact whenever it fits).
EXACT, LOSSY_MOMENTS, LOSSY_WEIGHTS_8BIT, LOSSY_WEIGHTS_4BIT = 0, 1, 2, 3
LOSSINESS_NAMES = {EXACT: "exact", LOSSY_MOMENTS: "8-bit optimizer moments", LOSSY_WEIGHTS_8BIT: "8-bit weights",
                   LOSSY_WEIGHTS_4BIT: "4-bit weights"}
REQUIREMENTS = frozenset({"cuda", "bitsandbytes"})
AUTO_DEFAULTS: dict[str, Any] = {"lossiness": EXACT, "quality_note": "", "speed_cost": 1.0, "requires": frozenset(),
                                 "auto_candidate": True}


def auto_traits(strategy: Any) -> dict[str, Any]:
    """A strategy's (class's) auto-search metadata, with AUTO_DEFAULTS for what it does not declare."""
    return {k: getattr(strategy, k, default) for k, default in AUTO_DEFAULTS.items()}


def hooks_of(strategy: Any) -> list[str]:
    """The hook points a strategy implements (defined as callables on it)."""
    return [h for h in HOOKS if callable(getattr(strategy, h, None))]


def exclusive_claims(strategies: Iterable[Any]) -> dict[str, list[str]]:
    claims: dict[str, list[str]] = {}
    for s in strategies:
        for h in hooks_of(s):
            if h in EXCLUSIVE_HOOKS:
                claims.setdefault(h, []).append(s.name)
    return claims


def strategy_config():
    """pydantic settings every strategy uses: unknown arguments are errors, instances are immutable values."""
    from pydantic import ConfigDict

    return ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}


def bitsandbytes_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("bitsandbytes") is not None
