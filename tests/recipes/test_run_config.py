"""memfit.recipes.run_config: one nested config, one definition per field, flat names for flags and old files."""
import pytest
from pydantic import ValidationError

from memfit.recipes.run_config import FLAT, RECIPE_SETS, FinetuneConfig, merged_settings, nest
from memfit.training.loop import TrainConfig


def test_flat_and_nested_forms_are_the_same_config():
    flat = FinetuneConfig(model="m", lr=1e-3, seq_len=64, micro_batch=2, eval_context=32, seed=3)
    nested = FinetuneConfig(model={"name": "m"}, train={"lr": 1e-3}, data={"seq_len": 64}, plan={"micro_batch": 2},
                            eval={"eval_context": 32}, seed=3)
    assert flat == nested
    assert isinstance(flat.train, TrainConfig) and flat.train.lr == 1e-3 and flat.data.seq_len == 64


def test_a_setting_given_flat_and_nested_is_refused():
    with pytest.raises(ValidationError, match="given twice"):
        FinetuneConfig.model_validate({"lr": 1e-3, "train": {"lr": 2e-3}})
    with pytest.raises(ValidationError, match="given twice"):
        FinetuneConfig.model_validate({"model_config": "a", "architecture": "b"})


@pytest.mark.parametrize("empty", [None, []])
def test_an_empty_section_beside_one_of_its_flat_settings_is_refused_by_name(empty):
    # found by the property test: `plan: null` (YAML's `plan:` with nothing under it) and a flat plan setting
    with pytest.raises(ValidationError, match=r"plan = .* is not a section of settings, and 'cpu_budget_gib' belongs"):
        FinetuneConfig.model_validate({"plan": empty, "cpu_budget_gib": 2.0})


def test_the_loop_settings_the_job_decides_are_no_settings():
    assert not RECIPE_SETS & {key for key, (section, _) in FLAT.items() if section == "train"}
    assert FLAT["micro_batch"] == ("plan", "micro_batch") and FLAT["seed"] == (None, "seed")
    with pytest.raises(ValidationError, match="train.micro_batch is decided by the job"):
        FinetuneConfig.model_validate({"train": {"micro_batch": 4}})
    assert not RECIPE_SETS & set(FinetuneConfig().model_dump()["train"])


def test_model_config_is_the_name_and_architecture_its_alias():
    assert FLAT["model_config"] == FLAT["architecture"] == ("model", "config")
    cfg = FinetuneConfig(architecture="llama-3.2-1b")
    assert cfg.model.source == "llama-3.2-1b" and cfg.model.random and "model_config" in cfg.flat()


def test_device_defaults_fill_only_what_is_unset():
    cpu = FinetuneConfig().resolved("cpu")
    assert cpu.train.lr == 3e-3 and cpu.train.max_steps == 6 and cpu.data.seq_len == 256
    assert cpu.train.warmup == 0.1 and cpu.train.log_with == "tensorboard"  # the job's defaults, not the loop's
    mine = FinetuneConfig(lr=1e-4, epochs=2.0).resolved("cpu")
    assert mine.train.lr == 1e-4 and mine.train.epochs == 2.0 and mine.train.max_steps is None
    assert FinetuneConfig().resolved("cuda").train.epochs == 1.0
    assert FinetuneConfig(eval_max_tokens=0).resolved("cpu").eval.eval_max_tokens is None  # 0: every token


def test_run_names_and_fingerprints_are_those_of_earlier_versions():
    # computed by the flat FinetuneConfig before the sections: a rerun finds its old run folder
    # the CPU default's name changed once on purpose (2026-12-05): its seed stack names LoRA's targets 'all-linear',
    # resolved per family, instead of Llama's seven projection names (the same modules for Llama); and again the same
    # day when the seed stack gained the chunked loss (`cce`): a stack is part of a run's identity, so an old default
    # run is not resumed by a different stack, and `memfit eval` of the old folder still works
    assert FinetuneConfig().resolved("cpu").run_name == "smollm2-135m-cpu-19bdd12d"
    assert FinetuneConfig().resolved("cuda").run_name == "smollm2-135m-cuda-5ebdb3a3"
    assert FinetuneConfig(pdf_dir="x", model="m", lr=1e-3, architecture="a").resolved("cpu").run_name == \
        "a-random-cpu-1b8df27a"  # also a CPU seed-stack run


def test_a_flat_results_config_of_an_earlier_version_loads():
    old = {"pdf_dir": "papers", "sources": [], "model": "smollm2-135m", "architecture": None, "random_init": False,
           "stack": "lora", "seq_len": 256, "target_effective_batch": 8, "max_steps": 6, "epochs": None, "lr": 3e-3,
           "warmup": 0.1, "test_fraction": 0.2, "eval_context": 256, "eval_stride": None, "eval_batch_size": 4,
           "eval_max_tokens": 4096, "output_dir": "results", "run_name": "r", "seed": 0, "margin": 0.03,
           "fresh": False, "plan_cache": None, "cpu_budget_gib": 4.0, "max_micro_batch": 4, "weight_decay": 0.0,
           "scheduler": "cosine", "max_grad_norm": 1.0, "eval_every": None, "checkpoint_every": 100,
           "checkpoint_minutes": 10.0, "keep_last": 2, "log_with": "tensorboard", "resume": "auto", "progress": True,
           "keep_non_english": False, "text_cache": None, "arrow_cache": None, "num_proc": None}
    cfg = FinetuneConfig.model_validate(old)
    assert cfg.train.epochs == 1.0 and cfg.train.max_steps == 6 and [s.path for s in cfg.data.sources] == ["papers"]
    assert FinetuneConfig.model_validate(cfg.model_dump()) == cfg  # and its nested record round-trips


def test_updated_keeps_unset_settings_unset():
    cfg = FinetuneConfig(model="m").updated(seq_len=64)
    assert "lr" not in cfg.train.model_fields_set and cfg.resolved("cpu").train.lr == 3e-3
    assert nest({"lr": None, "checkpoint_every": None}) == {"train": {"checkpoint_every": None}}


def test_the_job_bounds_the_loops_settings():
    for bad in ({"lr": 1e308}, {"epochs": float("inf")}, {"warmup": float("inf")}, {"max_steps": 2**40}):
        with pytest.raises(ValidationError):
            FinetuneConfig.model_validate(bad)


def test_paths_are_recorded_absolute_so_a_run_travels(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = FinetuneConfig.model_validate({"sources": [{"kind": "text", "path": "notes"}, {"kind": "hub", "id": "a/b"}],
                                         "output_dir": "res", "plan_cache": "plans"})
    resolved = cfg.resolved("cpu")
    assert resolved.data.sources[0].path == str(tmp_path / "notes") and resolved.data.sources[1].id == "a/b"
    assert resolved.output_dir == str(tmp_path / "res") and resolved.plan.plan_cache == str(tmp_path / "plans")
    assert FinetuneConfig(pdf_dir="pdfs").resolved("cpu").data.sources[0].path == str(tmp_path / "pdfs")
    assert resolved.run_name == cfg.resolved("cpu").run_name  # the paths are not part of the run's identity


def test_a_later_layer_naming_the_data_replaces_the_earlier_in_either_form():
    script_default, recipe = nest({"pdf_dir": "bundled"}), nest({"sources": [{"kind": "text", "path": "notes"}]})
    assert merged_settings(script_default, recipe)["data"] == {"sources": [{"kind": "text", "path": "notes"}]}
    flags = nest({"pdf_dir": "papers", "seq_len": 64})
    assert merged_settings(recipe, flags)["data"] == {"pdf_dir": "papers", "seq_len": 64}
    assert FinetuneConfig.model_validate(merged_settings(recipe, flags)).data.sources[0].path == "papers"
def test_packing_and_a_validation_split_join_the_identity_only_when_set():
    """Runs that leave them at their defaults keep the names earlier versions gave them; a run that changes them
    trains on other blocks or documents, so it gets a name (and checkpoint identity) of its own."""
    plain = FinetuneConfig()
    assert not {"packing", "validation_fraction"} & set(plain.identity())
    unpacked, validated = FinetuneConfig(packing=False), FinetuneConfig(validation_fraction=0.1)
    assert unpacked.identity()["packing"] is False and validated.identity()["validation_fraction"] == 0.1
    names = {cfg.resolved("cpu").run_name for cfg in (plain, unpacked, validated)}
    assert len(names) == 3
