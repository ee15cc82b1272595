"""The sections of the fine-tune job's config (memfit/recipes/run_config.py assembles them): model, data, plan and
eval; the train section is the loop's own TrainConfig. Every numeric field is finite and bounded (limits.py)."""

from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..bundled import CLIMATE_SAMPLE
from ..data.sources import PdfSource, Source
from .limits import CPU_BUDGET_GIB, MARGIN, number_problem

SAMPLE_PROMPT = "The main finding is that"  # continued as text, and answered as a chat turn too (SmolLM2, by hand)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    @field_validator("*")
    @classmethod
    def _finite_and_bounded(cls, value: Any) -> Any:
        """Every number finite and every count within limits.MAX_COUNT (memfit/recipes/limits.py)."""
        problem = number_problem(value)
        if problem:
            raise ValueError(problem)
        return value


class ModelSection(Section):
    name: str = Field("smollm2-135m", description="the embedded default, a local directory or a Hub id",
                      json_schema_extra={"flat": "model"})
    config: Optional[str] = Field(None, description="a shipped architecture (llama-3.2-3b) or a config JSON instead "
                                  "of weights; implies random_init",
                                  json_schema_extra={"flat": "model_config", "aliases": ["architecture"]})
    random_init: bool = Field(False, description="random weights (capacity/throughput runs)")
    tokenizer: Optional[str] = Field(None, description="a tokenizer folder or Hub id to use instead of the model's")
    chat_template: Optional[str] = Field(None, description="a Jinja chat template (text, or a file holding it) "
                                                           "replacing the tokenizer's")

    @property
    def source(self) -> str:
        return self.config or self.name

    @property
    def random(self) -> bool:
        return self.random_init or bool(self.config)


class DataSection(Section):
    pdf_dir: Optional[str] = Field(None, exclude=True, description=(
        "a folder of text PDFs: shorthand for sources [{kind: pdf, path: DIR}] (what the run records); either "
        "form replaces the data a recipe named, both in one place are refused"))
    sources: list[Source] = Field(default_factory=lambda: [PdfSource(path=str(CLIMATE_SAMPLE))], description=(
        "training data: a YAML list of sources, each {kind: pdf|text|table|saved|hub, path (hub: id), ...}; the keys "
        "of each kind are listed at the end; one document split across all. Default: the bundled CC BY sample"))
    text_cache: Optional[str] = Field(None, description="extracted page texts; default $MEMFIT_CACHE/text")
    arrow_cache: Optional[bool] = Field(None, description=(
        "tokenise through datasets' Arrow cache ($MEMFIT_CACHE/arrow, reused by a rerun) and train from memory-mapped "
        "blocks: corpora larger than memory. null: when the input files exceed 256 MB or a source is a Hub id"))
    num_proc: Optional[int] = Field(None, ge=1, description="tokenising processes on the Arrow path; default 1 on "
                                                             "CPU, up to 8 on a GPU host")
    seq_len: Optional[int] = Field(None, ge=8, description="training block length in tokens (= the planner's "
                                                            "sequence length)")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="fraction of documents held out for evaluation")
    validation_fraction: float = Field(0.0, ge=0, lt=1, description=(
        "fraction of documents held out of training as a validation split (never test documents), scored before "
        "and after training and every eval_every steps, reported apart from the test perplexity; 0: no "
        "validation split (eval_every then scores the test documents)"))
    packing: bool = Field(True, description=(
        "true: pack documents into full blocks (EOS between them, position ids restart per document); "
        "false: one document or conversation per block, right-padded, the padding masked out of attention and loss "
        "(a document longer than a block continues in blocks of its own)"))
    train_on_inputs: bool = Field(False, description="chat data: also train on system/user tokens; false: the loss "
                                                     "counts assistant tokens only (not yet supported as true)")
    keep_non_english: bool = Field(False, description="train on PDF documents the language check flags as not "
                                                      "English (sets keep_non_english of every PDF source)")

    @model_validator(mode="before")
    @classmethod
    def _pdf_dir_as_source(cls, data: Any) -> Any:
        """`pdf_dir` becomes the one PDF source here, so every run reads its data through the same sources and
        records it as `sources` (values of the wrong type are left to the fields' own checks)."""
        if not isinstance(data, dict) or not isinstance(data.get("pdf_dir"), str):
            return data
        data = dict(data)
        pdf_dir, sources = data.pop("pdf_dir"), data.get("sources")
        if sources and pdf_dir != str(CLIMATE_SAMPLE):  # earlier records carried this default beside their sources
            raise ValueError(f"pdf_dir ({pdf_dir}) and sources both name the training data: give one (pdf_dir DIR is "
                             f"sources [{{kind: pdf, path: DIR}}])")
        if not sources:
            data["sources"] = [{"kind": "pdf", "path": pdf_dir}]
        return data

    @model_validator(mode="after")
    def _keep_non_english_in_every_pdf_source(self):
        """The PDF sources are where the language check reads it (memfit/data/readers.py)."""
        if self.keep_non_english and any(isinstance(s, PdfSource) and not s.keep_non_english for s in self.sources):
            self.sources = [s.model_copy(update={"keep_non_english": True}) if isinstance(s, PdfSource) else s
                            for s in self.sources]
        return self


class DataRequest(DataSection):
    """What the data builders read: the data section and the run's seed (it seeds the document split)."""
    seed: int = 0


class PlanSection(Section):
    target_effective_batch: Optional[int] = Field(None, ge=1, description="sequences per optimizer step, all "
                                                                          "processes")
    micro_batch: Optional[int] = Field(None, ge=1, description="a fixed micro-batch per process: skips the planner's "
                                                               "probes (an OOM still halves it)")
    max_micro_batch: Optional[int] = Field(None, ge=1, description="planner search limit (on CPU it bounds probe "
                                                                   "time)")
    margin: float = Field(0.03, ge=MARGIN[0], lt=MARGIN[1], allow_inf_nan=False,
                          description="fraction of device memory the planner keeps free")
    fresh: bool = Field(False, description="re-probe instead of reusing the planner cache")
    plan_cache: Optional[str] = Field(None, description="planner cache folder; default $MEMFIT_CACHE/plans")
    cpu_budget_gib: float = Field(4.0, ge=CPU_BUDGET_GIB[0], le=CPU_BUDGET_GIB[1], allow_inf_nan=False,
                                  description="CPU only: the simulated device memory the planner searches against")


class EvalSection(Section):
    eval_context: Optional[int] = Field(None, ge=2, description="evaluation window in tokens (at most the model's "
                                                                "max_position_embeddings)")
    eval_stride: Optional[int] = Field(None, ge=1, description="sliding-window stride; default the window")
    eval_batch_size: Optional[int] = Field(None, ge=1, description="evaluation windows per forward pass")
    eval_max_tokens: Optional[int] = Field(None, ge=0, description="score an evenly spaced sample of this many test "
                                                                   "tokens; 0 = all")
    sample_prompt: str = Field(SAMPLE_PROMPT, max_length=2000, description=(
        "the prompt the summary's sample answers (before and after training, greedy, 32 tokens) reply to: "
        "continued as text, or asked as a user turn in a chat run; empty: no sample"))
