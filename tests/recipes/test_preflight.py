"""memfit.recipes.preflight: settings that cannot work are refused before extraction, loading or planning."""
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from memfit.recipes.finetune import FinetuneConfig, run_finetune
from memfit.recipes.run_config import FLAT
from memfit.core.protocol import StackError
from memfit.core.errors import ConfigError
from memfit.recipes.preflight import check_data_fits, preflight
from memfit.training.run_lock import LOCK_FILE
from _models import tiny_config


@pytest.fixture
def arch(tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(tiny_config().to_json_string())  # max_position_embeddings 256
    return path


def _cfg(tmp_path, arch, **overrides):
    base = dict(pdf_dir=str(tmp_path / "no-pdfs-here"), architecture=str(arch), output_dir=str(tmp_path / "out"),
                run_name="run", seq_len=64, stack="lora+ga2")
    cfg = FinetuneConfig(**base).resolved("cpu")
    for key, value in overrides.items():  # unvalidated, as a config changed in code may be: preflight checks it
        section, field = FLAT[key]
        setattr(cfg if section is None else getattr(cfg, section), field, value)
    return cfg


@pytest.mark.parametrize("overrides, needle", [
    (dict(lr=math.inf), r"setting lr=inf: .*finite"),
    (dict(lr=math.nan), r"setting lr=nan"),
    (dict(lr=0.0), r"setting lr=0.0: .*greater than 0"),
    (dict(seq_len=-1), r"setting seq_len=-1"),
    (dict(seq_len=512), r"sequence length 512 exceeds the model's max_position_embeddings \(256\): pass --seq-len 256"),
    (dict(run_name="/abs/elsewhere"), r"--run-name '/abs/elsewhere' must be a plain folder name inside --output-dir"),
    (dict(run_name="../up"), r"must be a plain folder name"),
    (dict(architecture=None, model="/no/such/model-folder"), r"model '/no/such/model-folder' does not exist"),
    (dict(architecture=None, model="./relative-missing"), r"does not exist"),
    (dict(stack="+++"), r"a stack spec with no strategy: '\+\+\+'"),
])
def test_bad_settings_are_refused_before_any_slow_work(tmp_path, arch, overrides, needle):
    cfg = _cfg(tmp_path, arch, **overrides)
    with pytest.raises((ConfigError, StackError), match=needle):
        preflight(cfg)
    # through the job: the config error, not the missing PDF folder extraction would have hit first
    with pytest.raises((ConfigError, StackError), match=needle):
        run_finetune(cfg)


def test_a_bad_stack_fails_before_extraction(tmp_path, arch):
    from memfit import StackError

    with pytest.raises(StackError):
        run_finetune(_cfg(tmp_path, arch, stack="lora+nonsense"))


def test_a_good_config_passes_and_names_the_run_folder(tmp_path, arch):
    assert preflight(_cfg(tmp_path, arch)) == tmp_path / "out" / "run"


def test_stack_auto_passes_preflight_the_planner_chooses_it_later(tmp_path, arch):
    # regression: the GPU default 'auto' was parsed as a strategy name before any run could start
    assert preflight(_cfg(tmp_path, arch, stack="auto")) == tmp_path / "out" / "run"
    assert preflight(FinetuneConfig(architecture=str(arch), output_dir=str(tmp_path / "o"), run_name="r",
                                    seq_len=64).resolved("cuda")) == tmp_path / "o" / "r"


def test_an_effective_batch_larger_than_the_data_is_refused():
    with pytest.raises(ConfigError, match=r"--target-effective-batch 1000000 is larger than the 739 training blocks "
                                          r"of 256 tokens: pass --target-effective-batch 184 or less"):
        check_data_fits(1_000_000, 739, 256)
    check_data_fits(739, 739, 256)
    # a stack that names its own target (a rerun of results.json records the resolved stack): the fix is in the stack
    with pytest.raises(ConfigError, match=r"the stack's ga:effective_batch=32 is larger than the 29 training blocks "
                                          r"of 512 tokens: set it to 7 or less in --stack"):
        check_data_fits(32, 29, 512, in_stack=True)


def test_a_second_run_into_the_same_folder_is_refused(tmp_path, arch):
    import os
    import socket
    import subprocess
    import sys

    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        run_dir = tmp_path / "out" / "run"
        run_dir.mkdir(parents=True)
        (run_dir / LOCK_FILE).write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname()}))
        from memfit.training.run_lock import RunLockedError

        with pytest.raises(RunLockedError, match=rf"pid {holder.pid}"):
            run_finetune(_cfg(tmp_path, arch))
        assert not (run_dir / "results.json").exists() and os.listdir(run_dir) == [LOCK_FILE]
    finally:
        holder.kill()
        holder.wait()


VALUES = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(), st.text(max_size=12))


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(FLAT) + ["bogus"]), VALUES, max_size=6))
def test_any_run_config_parses_or_raises_validation_error(data):
    try:
        cfg = FinetuneConfig.model_validate(data)
    except ValidationError:
        return
    assert math.isfinite(cfg.train.lr) and 0 < cfg.train.lr <= 1
    assert FinetuneConfig.model_validate(cfg.model_dump()) == cfg  # a loaded config round-trips


def test_a_plan_cache_that_is_a_file_is_refused(tmp_path, arch):
    with pytest.raises(ConfigError, match=r"--plan-cache /dev/null cannot be used: it is a device"):
        preflight(_cfg(tmp_path, arch, plan_cache="/dev/null"))


def test_a_run_folder_inside_a_data_source_is_refused(tmp_path, arch):
    from memfit.data.sources import TextSource

    data = tmp_path / "papers"
    data.mkdir()
    with pytest.raises(ConfigError, match=r"lies inside the data source"):  # the --pdf-dir folder, as its source
        preflight(FinetuneConfig(pdf_dir=str(data), architecture=str(arch), output_dir=str(data / "results"),
                                 run_name="run", seq_len=64, stack="lora+ga2").resolved("cpu"))
    notes = tmp_path / "notes"
    notes.mkdir()

    sources = [TextSource(path=str(notes))]
    with pytest.raises(ConfigError, match=r"lies inside the data source"):
        preflight(_cfg(tmp_path, arch, sources=sources, output_dir=str(notes)))


def test_a_chat_template_that_is_neither_file_nor_template_is_refused(tmp_path, arch):
    with pytest.raises(ConfigError, match=r"neither a file nor a Jinja template"):
        preflight(_cfg(tmp_path, arch, chat_template="no-such-template-file"))


def test_packing_off_and_a_validation_split_pass_preflight(tmp_path, arch):
    assert preflight(_cfg(tmp_path, arch, packing=False, validation_fraction=0.1)).name


def test_a_chat_template_is_read_from_its_file(tmp_path):
    from memfit.recipes.preflight import read_chat_template

    template = "{% for message in messages %}{{ message['content'] }}{% endfor %}"
    (tmp_path / "chat.jinja").write_text(template)
    assert read_chat_template(str(tmp_path / "chat.jinja")) == template == read_chat_template(template)


def test_validating_again_keeps_the_device_defaults():
    """A config checked once more before the run must still take the CPU demo's tuned defaults (lr 3e-3, 6 steps),
    not the library loop's (2e-4, one epoch): validation may not mark unset settings as set."""
    from memfit.cli.train import parse_config
    from memfit.recipes.preflight import validated

    for cfg in (FinetuneConfig(), parse_config([])):
        resolved = validated(validated(cfg)).resolved("cpu")
        assert (resolved.train.lr, resolved.train.max_steps) == (3e-3, 6)
        assert resolved.run_name == cfg.resolved("cpu").run_name
