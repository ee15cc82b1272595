"""Reversible module swaps: how strategies change what a submodule computes without rebinding `forward`.

A `Wrapper` takes the place of a submodule in its parent (as peft's and Liger's layers do) but shares the wrapped
module's children, parameters and buffers (the very same dicts). Parameter names, state dicts, peft adapters and
optimizer state are therefore unchanged, and `unwrap_all` puts the original module back.
"""

from __future__ import annotations

import torch


class Wrapper(torch.nn.Module):
    """Base of every swapped-in module; `inner` is the original, kept off the module tree."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        object.__setattr__(self, "inner", inner)  # not a submodule: its names would gain an ".inner" level
        self._modules, self._parameters, self._buffers = inner._modules, inner._parameters, inner._buffers


def wrap(parent: torch.nn.Module, name: str, make) -> None:
    """Replace parent.<name> by make(original), unless it is already a wrapper of that kind."""
    child = getattr(parent, name)
    if not isinstance(child, Wrapper):
        setattr(parent, name, make(child))


def unwrap_all(model: torch.nn.Module, kind: type[Wrapper]) -> torch.nn.Module:
    """Put back the original of every `kind` wrapper in the model."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, kind):
                setattr(parent, name, child.inner)
    return model


# The engines' wrappers of the whole model after `accelerator.prepare` (DDP, DeepSpeed's engine, FSDP1): each holds
# the model as `.module`. Matched by class name because deepspeed is an optional dependency; not accelerate's
# `extract_model_from_parallel` because core/ imports no accelerate (core/step.py) and that helper also unwraps
# torch.compile's module, whose parts memfit must not reach around.
PARALLEL_WRAPPERS = ("DistributedDataParallel", "DataParallel", "DeepSpeedEngine", "FullyShardedDataParallel")


def unwrap_parallel(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside the engines' wrappers (the model itself when there is none). For finding its parts only: the
    forward must still go through the wrapper, which synchronises the gradients."""
    while type(model).__name__ in PARALLEL_WRAPPERS and isinstance(getattr(model, "module", None), torch.nn.Module):
        model = model.module
    return model


def unwrap_peft(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model inside the engines' and peft's wrappers (the model itself when there is none)."""
    model = unwrap_parallel(model)
    return model.get_base_model() if hasattr(model, "get_base_model") else model
