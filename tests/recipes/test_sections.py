"""memfit.recipes.sections: every number finite and bounded; the model section names its source."""
import math

import pytest
from pydantic import ValidationError

from memfit.recipes.limits import CPU_BUDGET_GIB, MAX_COUNT
from memfit.recipes.sections import DataSection, EvalSection, ModelSection, PlanSection


@pytest.mark.parametrize("section, values", [
    (DataSection, {"seq_len": MAX_COUNT + 1}), (DataSection, {"test_fraction": math.nan}),
    (PlanSection, {"margin": 5}), (PlanSection, {"margin": math.nan}), (PlanSection, {"cpu_budget_gib": 1e-9}),
    (PlanSection, {"cpu_budget_gib": math.inf}), (PlanSection, {"target_effective_batch": -1}),
    (PlanSection, {"micro_batch": 0}), (EvalSection, {"eval_batch_size": 0}), (EvalSection, {"eval_context": 1}),
])
def test_out_of_range_numbers_are_refused(section, values):
    with pytest.raises(ValidationError):
        section(**values)


def test_the_bounds_admit_what_runs_use():
    assert PlanSection(cpu_budget_gib=CPU_BUDGET_GIB[0], margin=0.0).cpu_budget_gib == CPU_BUDGET_GIB[0]
    assert DataSection(seq_len=8).seq_len == 8 and EvalSection(eval_max_tokens=0).eval_max_tokens == 0


def test_the_model_source_is_the_config_when_given():
    assert ModelSection().source == "smollm2-135m" and not ModelSection().random
    assert ModelSection(config="llama-3.2-1b").source == "llama-3.2-1b" and ModelSection(config="x").random


def test_pdf_dir_becomes_the_one_pdf_source_and_the_record_holds_only_sources():
    from memfit.bundled import CLIMATE_SAMPLE

    assert [(s.kind, s.path) for s in DataSection().sources] == [("pdf", str(CLIMATE_SAMPLE))]
    data = DataSection(pdf_dir="papers")
    assert [(s.kind, s.path) for s in data.sources] == [("pdf", "papers")] and data.pdf_dir is None
    assert "pdf_dir" not in data.model_dump() and DataSection.model_validate(data.model_dump()) == data
    # an earlier version's record: its pdf_dir default beside its sources names nothing
    old = DataSection(pdf_dir=str(CLIMATE_SAMPLE), sources=[{"kind": "text", "path": "notes"}])
    assert [s.kind for s in old.sources] == ["text"]


def test_data_named_twice_is_refused():
    with pytest.raises(ValidationError, match="pdf_dir .* and sources both name the training data: give one"):
        DataSection(pdf_dir="papers", sources=[{"kind": "text", "path": "notes"}])


def test_keep_non_english_reaches_every_pdf_source():
    data = DataSection(keep_non_english=True, sources=[{"kind": "pdf", "path": "a"}, {"kind": "text", "path": "b"}])
    assert [getattr(s, "keep_non_english", None) for s in data.sources] == [True, None]
    assert DataSection(keep_non_english=True).sources[0].keep_non_english  # the default sample too
    assert DataSection(pdf_dir="papers", keep_non_english=True).sources[0].keep_non_english
