"""memfit.models, the safetensors cache of the embedded model: written through core/files.atomic_directory, so a
conversion that crashed (or a killed process's temporary folder) never breaks or litters the next one."""
from __future__ import annotations

import os
import subprocess
import sys
import types

import pytest
import transformers

from memfit import models
from memfit.core import integrity


class _Fake:
    """Stands in for the GGUF-loaded model and tokenizer (the real conversion takes ~25 s)."""

    def __init__(self, filename: str, fail: bool = False):
        self.filename, self.fail = filename, fail
        self.hf_quantizer = types.SimpleNamespace(remove_quantization_config=lambda model: None)

    def save_pretrained(self, folder):
        (folder / self.filename).write_bytes(b"weights")
        if self.fail:
            raise OSError(28, "No space left on device")


@pytest.fixture
def conversion(tmp_path, monkeypatch):
    monkeypatch.setenv("MEMFIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(models, "_gguf_folder", lambda: tmp_path)
    state = {"fail": False, "runs": 0}

    def model(*args, **kwargs):
        state["runs"] += 1
        return _Fake("model.safetensors", fail=state["fail"])

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", model)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: _Fake("tokenizer.json"))
    return state


def test_a_crashed_conversion_leaves_nothing_and_the_next_one_succeeds(tmp_path, conversion):
    parent = tmp_path / "cache" / "models"
    conversion["fail"] = True
    with pytest.raises(OSError, match="No space"):
        models.embedded_model_dir()
    assert os.listdir(parent) == []  # no half-written cache folder that the next call would trust
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = parent / f".{models.EMBEDDED}.{dead.pid}-deadbeef.tmp"  # a conversion killed with -9 half-way
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half")
    conversion["fail"] = False
    out = models.embedded_model_dir()
    assert sorted(os.listdir(out)) == [integrity.MANIFEST, "model.safetensors", "tokenizer.json"]
    assert os.listdir(parent) == [models.EMBEDDED]  # the killed process's leftovers are gone
    assert models.embedded_model_dir() == out and conversion["runs"] == 2  # cached: not converted again


@pytest.mark.parametrize("damage", ["flip", "truncate", "no manifest"])
def test_a_damaged_converted_copy_is_converted_again_with_one_line(tmp_path, conversion, caplog, damage):
    """Flipped bits in the cached safetensors used to give perplexity 1001 with exit 0: the copy is checked against
    the checksum manifest written with it (cheaply: unchanged file identities are not hashed again)."""
    out = models.embedded_model_dir()
    weights = out / "model.safetensors"
    if damage == "flip":
        data = bytearray(weights.read_bytes())
        data[3] ^= 0x10
        weights.write_bytes(bytes(data))
    elif damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:3])
    else:
        (out / integrity.MANIFEST).unlink()  # a copy an older memfit converted: its content was never recorded
    assert conversion["runs"] == 1
    with caplog.at_level("WARNING", logger="memfit.models"):
        assert models.embedded_model_dir() == out
    assert conversion["runs"] == 2 and weights.read_bytes() == b"weights"
    (line,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "converting it again" in line and (str(weights) in line or damage == "no manifest")
    assert integrity.manifest_problem(out) is None
    caplog.clear()
    assert models.embedded_model_dir() == out and conversion["runs"] == 2 and not caplog.records  # trusted again


def test_config_overrides_reach_a_model_loaded_from_weights(tiny_weights_dir):
    """memfit.plan.rope's scaled positions on saved weights: the model is built from the overridden config (passed as
    `config=`), so its rotary tables are the scaled ones, and the weights are the saved ones."""
    import torch

    from memfit.models import load_config, load_model
    from memfit.plan.rope import config_overrides, parse_rope_scaling

    overrides = config_overrides(load_config(tiny_weights_dir), parse_rope_scaling("linear:factor=2"))
    plain = load_model(tiny_weights_dir)
    scaled = load_model(tiny_weights_dir, config_overrides=overrides)
    assert scaled.config.max_position_embeddings == 2 * plain.config.max_position_embeddings
    assert scaled.config.rope_parameters["rope_type"] == "linear"
    torch.testing.assert_close(scaled.model.rotary_emb.inv_freq, plain.model.rotary_emb.inv_freq / 2)
    torch.testing.assert_close(scaled.lm_head.weight, plain.lm_head.weight)
