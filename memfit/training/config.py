"""The training loop's settings (`TrainConfig`), in a module of their own that imports no torch: `memfit train --help`
and the recipe's config are built from these fields without loading torch (startup in well under a second)."""

from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    micro_batch: int = Field(8, ge=1, description="sequences per forward pass per process (the planned size)")
    seq_len: Optional[int] = Field(None, ge=2, description="the block length the plan was made for: training blocks "
                                                         "of another length are refused (null: not checked)")
    max_steps: Optional[int] = Field(None, ge=1, description="optimizer steps; overrides epochs")
    epochs: float = Field(1.0, gt=0, description="passes over the training data")
    lr: float = Field(2e-4, gt=0, allow_inf_nan=False, description="peak learning rate")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    warmup: float = Field(0.05, ge=0, description="warm-up: fraction of steps if < 1, else a step count")
    scheduler: Literal["cosine", "linear", "constant"] = Field("cosine", description="learning-rate schedule after "
                                                                                     "warm-up")
    max_grad_norm: Optional[float] = Field(1.0, gt=0, description="gradient clipping norm; null: no clipping")
    eval_every: Optional[int] = Field(None, ge=1, description="optimizer steps between evaluations; null: none")
    eval_batch_size: int = Field(8, ge=1, description="evaluation windows per forward pass")
    eval_context: int = Field(512, ge=2, description="evaluation window in tokens")
    eval_stride: Optional[int] = Field(None, description="sliding-window stride; default the window")
    log_every: int = Field(1, ge=1, description="optimizer steps between log lines")
    seed: int = Field(0, description="seed of data order and dropout")
    output_dir: Optional[str] = Field(None, description="run directory for checkpoints, adapter and logs")
    save_adapter: bool = Field(True, description="save the trained adapter into output_dir")
    log_with: Optional[str] = Field(None, description="an accelerate tracker, e.g. tensorboard")
    progress: bool = Field(True, description="progress bar")
    max_bad_steps: int = Field(3, ge=1, description="consecutive non-finite losses (each update skipped) before the "
                                                    "run stops")
    checkpoint_every: Optional[int] = Field(100, ge=1, description="optimizer steps between checkpoints (with "
                                                                   "output_dir); null: none")
    checkpoint_minutes: Optional[float] = Field(
        10.0, gt=0, allow_inf_nan=False,
        description="also checkpoint when this many minutes passed since the last save, so a slow run never loses "
                    "more than this much work (null: by steps only)")
    keep_last: int = Field(2, ge=1, description="checkpoints kept on disk")
    resume: Union[bool, str] = Field("auto", description="auto: continue from the run's latest checkpoint if there "
                                                         "is one; true: one must exist; false/never: start fresh; "
                                                         "or one checkpoint folder")
    plan_cache: Optional[str] = Field(None, description="planner cache entry (JSON) to lower when an OOM forces a "
                                                        "smaller batch")
    run_identity: dict[str, Any] = Field(default_factory=dict, description="what else decides the result (model, "
                                         "data content hash, ...): part of the checkpoint fingerprint")
