"""A Stack composes strategies: validates the combination, then applies every hook in phase order."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterable, Union

import torch
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from .loss import causal_lm_nll
from .processes import distributed_type_name
from .protocol import HOOKS, Context, StackError, declared, exclusive_claims, hooks_of
from .registry import parse_item, strategy_class

StrategyItem = Union[str, dict[str, Any]]


class StackConfig(BaseModel):
    """The YAML/dict form: ``{strategies: ["lora", {"name": "ga", "steps": 8}]}``."""

    model_config = ConfigDict(extra="forbid")
    strategies: list[StrategyItem]


def _build(cls: type, kwargs: dict[str, Any], where: str):
    try:
        return cls(**kwargs)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or cls.name}: {e['msg']}" for e in exc.errors())
        raise StackError(f"invalid arguments for strategy {cls.name!r} in {where!r}: {problems}") from None


class Stack:
    """An ordered, validated set of strategies. Order of construction never matters: hooks run by phase."""

    def __init__(self, strategies: Iterable[Any] = ()):
        items = list(strategies)
        for s in items:
            if not hasattr(s, "name") or not hasattr(s, "phase"):
                raise StackError(f"{s!r} is not a strategy: it needs `name` and `phase` (see memfit.core.protocol.Strategy)")
        names = [s.name for s in items]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise StackError(f"strategy {dupes[0]!r} appears twice; keep one and set its arguments there")
        self.strategies: tuple[Any, ...] = tuple(sorted(items, key=lambda s: (s.phase, s.name)))
        for hook, owners in exclusive_claims(self.strategies).items():
            if len(owners) > 1:
                raise StackError(f"{' and '.join(owners)} both claim the exclusive hook {hook!r}; "
                                 f"keep only one of them in the stack")
        for s in self.strategies:
            if "check" in hooks_of(s):
                s.check(self)

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_spec(cls, spec: str) -> "Stack":
        """``"lora+q4+bf16+gc+ga8+adam8"``; ``"none"`` (or ``"full"``) is the empty stack (full fp32 fine-tune).
        A spec naming no strategy (``""``, ``"+++"``) or with an empty item (``"lora++gc"``) is refused: it would
        otherwise train a full fine-tune, or drop what was meant to be there, without a word."""
        if spec.strip().lower() in ("none", "full"):
            return cls([])
        items = [item.strip() for item in spec.split("+")]
        if not any(items):
            raise StackError(f"a stack spec with no strategy: {spec!r}; name strategies joined by '+' (e.g. "
                             f"'lora+gc'), or 'none' for a full fine-tune in fp32")
        if not all(items):
            raise StackError(f"an empty item in the stack spec {spec!r} (a '+' too many); write e.g. 'lora+gc'")
        return cls(_build(*parse_item(item), where=spec) for item in items)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | list) -> "Stack":
        try:
            cfg = StackConfig.model_validate(data if isinstance(data, dict) else {"strategies": data})
        except ValidationError as exc:
            raise StackError(f"invalid stack config: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']} "
                             f"(expected {{strategies: [name | {{name: ..., arg: value}}]}})") from None
        built = []
        for item in cfg.strategies:
            if isinstance(item, str):
                built.append(_build(*parse_item(item), where=item))
            else:
                kwargs = dict(item)
                if "name" not in kwargs:
                    raise StackError(f"stack entry {item} has no 'name'")
                klass, implied = strategy_class(str(kwargs.pop("name")))
                built.append(_build(klass, {**implied, **kwargs}, where=str(item)))
        return cls(built)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "Stack":
        """A stack from a YAML file; safe_load only, so a file can never run code. Errors name the file."""
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as exc:
            raise StackError(f"cannot read stack file {path}: {exc.strerror or exc}") from None
        except yaml.YAMLError as exc:
            raise StackError(f"stack file {path} is not valid YAML: {exc}".replace("\n", " ")) from None
        try:
            return cls.from_dict(data)
        except StackError as exc:
            raise StackError(f"{path}: {exc}") from None

    @classmethod
    def coerce(cls, stack: "Stack | str | dict | list | None") -> "Stack":
        if isinstance(stack, Stack):
            return stack
        if stack is None:
            return cls([])
        if isinstance(stack, str):
            return cls.from_yaml(stack) if stack.endswith((".yaml", ".yml")) else cls.from_spec(stack)
        return cls.from_dict(stack)

    # ---- queries ------------------------------------------------------------------------------
    def get(self, kind: str | type) -> Any | None:
        for s in self.strategies:
            if (isinstance(kind, str) and s.name == kind) or (isinstance(kind, type) and isinstance(s, kind)):
                return s
        return None

    def __contains__(self, kind: str | type) -> bool:
        return self.get(kind) is not None

    def __iter__(self):
        return iter(self.strategies)

    def __len__(self) -> int:
        return len(self.strategies)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Stack) and self.strategies == other.strategies

    def __repr__(self) -> str:
        return f"Stack({self.spec!r})"

    @property
    def spec(self) -> str:
        """Canonical spec: phase-ordered, non-default arguments only; round-trips through from_spec."""
        if not self.strategies:
            return "none"
        return "+".join(spec_of(s) for s in self.strategies)

    @property
    def key(self) -> str:
        """Every argument of every strategy, defaults included: what caches are keyed on."""
        import json

        return json.dumps([[s.name, s.model_dump(mode="json")] for s in self.strategies], sort_keys=True)

    @property
    def label(self) -> str:
        """Short human label for tables and plots."""
        return self.spec if self.strategies else "full-fp32"

    @property
    def compute_dtype(self) -> torch.dtype:
        for s in self.strategies:
            if declared(s, "autocast_dtype") is not None:
                return declared(s, "autocast_dtype")
        return torch.float32

    @property
    def trains_adapters_only(self) -> bool:
        return any(declared(s, "freezes_base") for s in self.strategies)

    @property
    def decides_accumulation(self) -> bool:
        return bool(self._providers("accumulation_steps"))

    def accumulation_steps(self, micro_batch: int, num_processes: int = 1) -> int:
        """Micro-batches per optimizer step, as the stack's schedule strategy decides (1 without one)."""
        providers = self._providers("accumulation_steps")
        return providers[0].accumulation_steps(micro_batch, num_processes) if providers else 1

    def check_launch(self, launch) -> list[str]:
        """Every strategy's verdict on the launch (a memfit.core.launch.Launch): raises StackError, or returns notes."""
        return [note for s in self._providers("check_launch") for note in s.check_launch(self, launch)]

    def describe(self) -> str:
        if not self.strategies:
            return "(empty stack: full fine-tune in fp32 with torch AdamW)"
        lines = [f"{s.name:<14} [{', '.join(h for h in hooks_of(s) if h not in ('check', 'check_launch'))}] {s.describe()}"
                 for s in self.strategies]
        return "\n".join(lines)

    def context(self, device: torch.device | str | None = None, distributed_type: str = "NO",
                num_processes: int = 1, **extras: Any) -> Context:
        dev = torch.device(device) if device is not None else _default_device()
        if dev.type == "cuda" and dev.index is None:  # one GPU, no process group: name the card (device_map needs it)
            dev = torch.device("cuda", torch.cuda.current_device())
        return Context(stack=self, compute_dtype=self.compute_dtype, device=dev,
                       distributed_type=distributed_type_name(distributed_type), num_processes=num_processes,
                       extras=extras)

    # ---- applying the hooks -------------------------------------------------------------------
    def _providers(self, hook: str):
        assert hook in HOOKS, hook
        return [s for s in self.strategies if hook in hooks_of(s)]

    def _merged(self, hook: str, ctx: Context) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        owner: dict[str, str] = {}
        for s in self._providers(hook):
            for key, value in getattr(s, hook)(ctx).items():
                if key in merged and merged[key] != value:
                    raise StackError(f"{owner[key]} and {s.name} set {hook} {key!r} differently "
                                     f"({merged[key]!r} vs {value!r}); make them agree or drop one")
                merged[key], owner[key] = value, s.name
        return merged

    def model_kwargs(self, ctx: Context) -> dict[str, Any]:
        return self._merged("model_kwargs", ctx)

    def accelerator_kwargs(self, ctx: Context) -> dict[str, Any]:
        return self._merged("accelerator_kwargs", ctx)

    def apply_model(self, model: torch.nn.Module, ctx: Context) -> torch.nn.Module:
        for s in self._providers("transform_model"):
            model = s.transform_model(model, ctx)
        # HF checkpointing only acts in training mode (GPU.md trap): leave the model ready to train.
        model.train()
        return model

    def remove_model(self, model: torch.nn.Module, ctx: Context) -> torch.nn.Module:
        """Undo apply_model: every transforming strategy's restore_model, last applied first."""
        irreversible = [s.name for s in self._providers("transform_model") if "restore_model" not in hooks_of(s)]
        if irreversible:
            raise StackError(f"{', '.join(irreversible)} cannot be removed from a model (no restore_model); "
                             f"load the model again instead")
        return self.release(model, ctx)

    def release(self, model: torch.nn.Module, ctx: Context | None = None) -> torch.nn.Module:
        """Take back every effect of the stack before the model is dropped, so nothing of it reaches a model loaded
        later in this process: each restore_model, last applied first, also in stacks that remove_model refuses
        (q4/q8 cannot give the weights back, but what the other strategies installed is still taken away)."""
        ctx = ctx or self.context(_device_of(model))
        for s in reversed(self._providers("restore_model")):
            model = s.restore_model(model, ctx)
        return model

    def layer_checkpoint(self, model: torch.nn.Module, ctx: Context):
        """How checkpointed decoder layers run, if a strategy provides it (activation offload parks their inputs in
        host memory); None: the checkpointing strategy's own default. Asked by the checkpointing strategy."""
        providers = self._providers("layer_checkpoint")
        return providers[0].layer_checkpoint(model, ctx) if providers else None

    def make_optimizer(self, model: torch.nn.Module, ctx: Context, lr: float, weight_decay: float = 0.0):
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise StackError("the model has no trainable parameters: add 'lora' or drop the quantization strategy")
        providers = self._providers("make_optimizer")
        if providers:
            return providers[0].make_optimizer(params, ctx, lr, weight_decay)
        fused = ctx.on_cuda and all(p.is_cuda and p.dtype in (torch.float32, torch.bfloat16, torch.float16)
                                    for p in params)
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused or None)

    def compute_loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], ctx: Context):
        """Sum of token NLLs and the number of predicted tokens; the loop does the normalisation."""
        providers = self._providers("compute_loss")
        if providers:
            return providers[0].compute_loss(model, batch, ctx)
        return causal_lm_nll(model, batch)

    def step_context(self, ctx: Context) -> contextlib.ExitStack:
        stack = contextlib.ExitStack()
        for s in self._providers("step_context"):
            stack.enter_context(s.step_context(ctx))
        return stack

    def estimate_memory(self, estimate, ctx: Context):
        for s in self._providers("estimate_memory"):
            s.estimate_memory(estimate, ctx)
        return estimate


def spec_of(strategy: Any) -> str:
    """A strategy's spec item: its own compact `spec_item()` if it has one, else name:non-default-args."""
    if callable(getattr(strategy, "spec_item", None)):
        return strategy.spec_item()
    args = ",".join(f"{k}={_fmt(v)}" for k, v in strategy.model_dump(exclude_defaults=True).items())
    return f"{strategy.name}:{args}" if args else strategy.name


def _fmt(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return "|".join(map(str, v))
    return str(v)


def _device_of(model: torch.nn.Module) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def _default_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
