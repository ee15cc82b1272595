"""The fine-tune job's settings: one nested config, one definition per field.

    model:  which weights, tokenizer and chat template        data:  sources, block length, split, packing
    stack:  the memory strategies (a spec; the Stack is its own nested config)
    plan:   how the micro-batch is found (or fixed)           train: the loop's own TrainConfig, as it is
    eval:   the held-out evaluation                           output_dir, run_name, seed: the run itself

`train` IS a `memfit.training.loop.TrainConfig`: its fields, defaults, checks and help are the loop's; the recipe
sets the ones it decides itself (RECIPE_SETS: the planned micro-batch, the run folder, the evaluation settings, the
seed), so they are neither flags nor YAML keys.

Flat names. Every field has one flat name - its own, or the `flat` of its json_schema_extra (`model.name` is
`model`, `model.config` is `model_config`, alias `architecture`) - used by the flags (`--lr`, `--seq-len`) and
accepted as a top-level YAML key, so the shipped recipes/*.yaml (flat, reading like a command line) and every README
command keep working. The nested form (`train: {lr: 3e-3}`) is accepted too and is what results.json records;
a setting given both ways is refused. Unset (None) settings take the device's default (`resolved`)."""

from __future__ import annotations

import hashlib
import json
import re
import typing
from pathlib import Path
from typing import Any, Optional

from pydantic import BaseModel, Field, PrivateAttr, field_serializer, field_validator, model_validator

from ..training.config import TrainConfig
from .limits import MAX_EPOCHS, MAX_LR, MAX_SEED, number_problem
from .sections import DataRequest, DataSection, EvalSection, ModelSection, PlanSection, Section  # noqa: F401

# CUDA: the planner chooses (memfit.plan.auto); CPU: the sweep's pick (see recipes/smollm2-cpu.yaml), fixed and fast
def seed_stack(device: str) -> str:
    """The default stack: 'auto' on CUDA, the strategies' CPU seed stack on CPU (imported here, not at the top:
    importing strategies/ loads torch, which `memfit train --help` does without)."""
    if device == "cuda":
        return "auto"
    from ..strategies.defaults import CPU_SEED_STACK

    return CPU_SEED_STACK
DEVICE_DEFAULTS: dict[str, dict[str, Any]] = {
    # 6 steps x 8 x 256 = 12k training tokens and 2 x 4k evaluation tokens: minutes on 2 CPU cores for SmolLM2-135M
    # in fp32. Swept lr 1e-3..6e-3 and 8/16 steps: 3e-3 for 8 steps (-14.0 %) = 1e-3 for 16 (-13.9 %); 3e-3 for 16
    # steps overshoots on the one training document of the bundled sample (-6.1 %), 6e-3 regresses (+5.8 %).
    "cpu": dict(seq_len=256, target_effective_batch=8, max_steps=6, lr=3e-3, eval_context=256, eval_batch_size=4,
                eval_max_tokens=4096, max_micro_batch=4),
    "cuda": dict(seq_len=512, target_effective_batch=32, epochs=1.0, lr=2e-4, eval_context=512, eval_batch_size=8,
                 eval_max_tokens=None, max_micro_batch=8192),
}
# TrainConfig fields the recipe decides (from the plan, the run folder, the eval section): not settings of the job
# (seq_len: the block length the plan was made for, which the loop checks every batch against)
RECIPE_SETS = frozenset({"micro_batch", "output_dir", "plan_cache", "run_identity", "save_adapter", "seed",
                         "eval_batch_size", "eval_context", "eval_stride", "seq_len"})
# the job's defaults where they differ from the library loop's (a report-writing job logs to tensorboard)
TRAIN_DEFAULTS = {"warmup": 0.1, "log_with": "tensorboard"}
# what decides the result besides the data: the run fingerprint and default name. Flat names, so a run's hash (and
# its folder name) is the one earlier versions computed for the same settings.
IDENTITY_KEYS = ("model", "architecture", "random_init", "stack", "seq_len", "target_effective_batch", "lr",
                 "warmup", "test_fraction", "seed", "weight_decay", "scheduler", "max_grad_norm")
# later settings that change what a run trains on: part of the identity only when not at their default, so a run
# that leaves them alone keeps the hash (and folder name) earlier versions gave it
IDENTITY_UNLESS_DEFAULT = {"packing": True, "validation_fraction": 0.0}


DATA_FORMS = frozenset({"pdf_dir", "sources"})  # the two ways to name the training data

SECTIONS: dict[str, type[BaseModel]] = {"model": ModelSection, "data": DataSection, "plan": PlanSection,
                                        "train": TrainConfig, "eval": EvalSection}
TOP_LEVEL = ("stack", "output_dir", "run_name", "seed")


def _flat_names() -> tuple[dict[str, tuple[Optional[str], str]], dict[tuple[Optional[str], str], str]]:
    """({flat name or alias: (section, field)}, {(section, field): flat name}); a name used twice fails at import."""
    to_field: dict[str, tuple[Optional[str], str]] = {name: (None, name) for name in TOP_LEVEL}
    to_flat = {where: name for name, where in to_field.items()}
    for section, model in SECTIONS.items():
        for name, info in model.model_fields.items():
            if section == "train" and name in RECIPE_SETS:
                continue
            extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
            flat = extra.get("flat", name)
            to_flat[(section, name)] = flat
            for key in [flat, *extra.get("aliases", [])]:
                if key in to_field:
                    raise TypeError(f"run setting {key!r} is defined twice ({to_field[key]} and {section}.{name})")
                to_field[key] = (section, name)
    return to_field, to_flat


FLAT, FLAT_OF = _flat_names()


def flag_of(loc: tuple) -> str:
    """The flat name of a validation error's location (('train', 'lr') -> 'lr'), else its dotted path."""
    key = tuple(loc[:2]) if len(loc) >= 2 and loc[0] in SECTIONS else (None, loc[0]) if loc else (None, "")
    return FLAT_OF.get(key, ".".join(map(str, loc)))


def nest(values: dict[Any, Any]) -> dict[Any, Any]:
    """Flat keys (`lr`, `seq_len`) and sections (`train: {lr: ...}`) into the nested form; a setting given twice is
    refused. A flat train setting that cannot be null given as null keeps the loop's default (older configs wrote
    `epochs: null` and `lr: null` for "the device default")."""
    nested: dict[Any, Any] = {}

    def put(section: Optional[str], field: str, value: Any, said: str) -> None:
        target = nested if section is None else nested.setdefault(section, {})
        if not isinstance(target, dict):  # `plan: null` (or a list) beside a flat plan setting
            raise ValueError(f"{section} = {target!r} is not a section of settings, and {said!r} belongs in it: "
                             f"write {section}: {{{field}: ...}} or drop the empty {section!r}")
        if field in target:
            raise ValueError(f"setting {said!r} is given twice (flat and in its section): keep one")
        target[field] = value

    for key, value in values.items():
        if key in SECTIONS and isinstance(value, dict):
            for field, item in value.items():
                put(key, field, item, f"{key}.{field}")
        elif isinstance(key, str) and key in FLAT:
            section, field = FLAT[key]
            if section == "train" and value is None and not _accepts_none(TrainConfig.model_fields[field]):
                continue
            put(section, field, value, key)
        else:
            nested[key] = value  # not a setting: the model refuses it by name
    return nested


def _accepts_none(info) -> bool:
    return type(None) in typing.get_args(info.annotation)


def merged_settings(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """`update`'s settings over `base`'s. The data is named in either form (pdf_dir is the shorthand of one PDF
    source): an update naming it replaces the base's data in both forms (a script's default folder, a recipe's
    sources), so only data given twice in one layer is refused."""
    out = dict(base)
    for key, value in update.items():
        if key == "data" and isinstance(value, dict) and isinstance(out.get(key), dict) and DATA_FORMS & set(value):
            out[key] = {k: v for k, v in out[key].items() if k not in DATA_FORMS}
        out[key] = {**out[key], **value} if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


class FinetuneConfig(Section):
    """Every setting of the fine-tune job (see the module docstring for the sections and the flat names)."""
    model: ModelSection = Field(default_factory=ModelSection)
    data: DataSection = Field(default_factory=DataSection)
    stack: Optional[str] = Field(None, description="memory strategies, spec or YAML; default: the device's seed "
                                                   "stack. Lacking 'ga', one is added")
    plan: PlanSection = Field(default_factory=PlanSection)
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(**TRAIN_DEFAULTS))
    eval: EvalSection = Field(default_factory=EvalSection)
    output_dir: str = Field("results", description="parent folder of run directories")
    run_name: Optional[str] = Field(None, description="run directory name; default <model>-<device>-<fingerprint>")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="seed of the document split, LoRA init and data order")
    # set by resolved(): where the effective batch came from - "default" (the device's; it may be fitted to a small
    # corpus), "setting" (target_effective_batch) or "stack" (the user's 'ga:effective_batch=N', which wins over the
    # setting); a value the user chose is refused when too large (memfit.recipes.finetune.setup_stack)
    _effective_batch_source: str = PrivateAttr("setting")

    @property
    def effective_batch_is_default(self) -> bool:
        return self._effective_batch_source == "default"

    @property
    def stack_names_effective_batch(self) -> bool:
        return self._effective_batch_source == "stack"

    @model_validator(mode="before")
    @classmethod
    def _accept_flat(cls, data: Any) -> Any:
        return nest(data) if isinstance(data, dict) else data

    @field_validator("train", mode="before")
    @classmethod
    def _job_defaults(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        decided = sorted(RECIPE_SETS & set(value))
        if decided:
            raise ValueError(f"train.{decided[0]} is decided by the job (the plan, the run folder, the eval "
                             f"section, the seed): set micro_batch under plan, eval_* under eval, seed at the top")
        return {**TRAIN_DEFAULTS, **value}

    @field_validator("train")
    @classmethod
    def _train_bounds(cls, train: TrainConfig) -> TrainConfig:
        """The loop accepts any positive lr and epoch count; a job refuses what no run can mean (limits.py)."""
        for name, value in train:
            problem = number_problem(value)
            if problem:
                raise ValueError(f"{name} (--{name.replace('_', '-')}): {problem}")
        if train.lr > MAX_LR:
            raise ValueError(f"lr (--lr) = {train.lr}: must be less than or equal to {MAX_LR} (a fine-tune uses "
                             f"1e-5..1e-2)")
        if train.epochs > MAX_EPOCHS:
            raise ValueError(f"epochs (--epochs) = {train.epochs}: must be at most {MAX_EPOCHS:g}")
        return train

    @field_serializer("train")
    def _train_settings(self, train: TrainConfig, info) -> dict[str, Any]:
        return train.model_dump(exclude=set(RECIPE_SETS), exclude_unset=info.exclude_unset, mode=info.mode)

    def updated(self, **flat: Any) -> "FinetuneConfig":
        """A validated copy with flat settings (`lr=1e-3`, `seq_len=64`) or sections replaced; what was unset stays
        unset (so the device defaults still apply)."""
        return type(self).model_validate(merged_settings(self.model_dump(exclude_unset=True), nest(flat)))

    def flat(self) -> dict[str, Any]:
        """{flat name: value} of every setting (what the flags show and the run identity hashes)."""
        return {name: getattr(self if section is None else getattr(self, section), field)
                for (section, field), name in FLAT_OF.items()}

    def data_request(self) -> DataRequest:
        return DataRequest(**dict(self.data), seed=self.seed)

    def resolved(self, device_type: str) -> "FinetuneConfig":
        """A copy with every unset setting replaced by the device default (what results.json records)."""
        device = "cuda" if device_type == "cuda" else "cpu"
        defaults = dict(DEVICE_DEFAULTS[device])
        if {"max_steps", "epochs"} & self.train.model_fields_set:  # the user chose the length of the run
            defaults.pop("max_steps", None), defaults.pop("epochs", None)
        current = self.flat()
        filled = {k: v for k, v in defaults.items()
                  if (k not in self.train.model_fields_set if FLAT[k][0] == "train" else current[k] is None)}
        if self.eval.eval_max_tokens == 0:
            filled["eval_max_tokens"] = None
        if self.stack is None:
            batch = self.plan.target_effective_batch or defaults["target_effective_batch"]
            filled["stack"] = seed_stack(device).format(batch=batch)
        resolved = self.updated(**filled, **self._absolute_paths())
        if self.run_name is None:  # the settings' hash in the name: different configurations never share a folder
            name = Path(self.model.source).name.lower()
            random = "-random" if self.model.random else ""
            tag = f"{name}{random}-{device_type}-{resolved.settings_hash()}"
            resolved = resolved.updated(run_name=re.sub(r"[^a-z0-9_.-]+", "-", tag))
        # set last: updated() makes a new object, without private attributes. The spec's text, not a parsed Stack:
        # a bad spec is preflight's to refuse, and `train --help` resolves before that
        if self.stack is not None and "effective_batch" in str(self.stack):
            resolved._effective_batch_source = "stack"
        elif "target_effective_batch" in filled:
            resolved._effective_batch_source = "default"
        return resolved

    def _absolute_paths(self) -> dict[str, Any]:
        """The data, cache and output paths made absolute (as flat settings): results.json records where the run
        read and wrote, so `memfit eval RUN` works from any folder and after the run folder is moved."""
        def absolute(path):
            return None if path is None else str(Path(path).expanduser().absolute())

        data, model, out = self.data, self.model, {}
        # a model, config, tokenizer or template given as a local path (not a Hub id or shipped name): its folder
        for name, value in (("model", model.name), ("model_config", model.config), ("tokenizer", model.tokenizer),
                            ("chat_template", model.chat_template)):
            if value is not None and Path(value).expanduser().exists() and absolute(value) != value:
                out[name] = absolute(value)
        for name, value in (("text_cache", data.text_cache),
                            ("plan_cache", self.plan.plan_cache), ("output_dir", self.output_dir)):
            if value is not None and absolute(value) != value:
                out[name] = absolute(value)
        if any(getattr(s, "path", None) and not Path(s.path).is_absolute() for s in data.sources):
            out["sources"] = [s.model_copy(update={"path": absolute(s.path)}) if getattr(s, "path", None) else s
                              for s in data.sources]
        return out

    def identity(self) -> dict[str, Any]:
        """The settings that change what a run computes (not its length, paths or display options)."""
        values = {**self.flat(), "architecture": self.model.config}
        return {**{key: values[key] for key in IDENTITY_KEYS},
                **{key: values[key] for key, default in IDENTITY_UNLESS_DEFAULT.items() if values[key] != default}}

    def settings_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.identity(), sort_keys=True, default=str).encode()).hexdigest()[:8]
