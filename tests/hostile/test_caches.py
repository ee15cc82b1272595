"""Hostile user, caches (issue 30): damaged or stale cache entries used to be trusted with exit 0 - a flipped bit in
the converted model, an edited text-cache entry, flipped Arrow token ids, a text edited at the same size with its
mtime restored, temp folders of killed Arrow builds. Each is rebuilt with one line (never reused, never fatal)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
import transformers

from _hostile import make_root, memfit, recipe, results, tiny_tokenizer  # noqa: F401
from pdf_factory import english_page, write_text_pdf

ARROW = {"arrow_cache": True}


def _run(root, out: str, **settings):
    """`memfit train` into its own output folder; (results, stderr)."""
    recipe(root, output_dir=str(root / out), **settings)
    done = memfit(root, "train", root / "tiny.yaml")
    assert done.returncode == 0, done.stderr[-3000:]
    return results(next((root / out).iterdir())), done.stderr


def _flip(path, offset):
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x01
    path.write_bytes(bytes(raw))


@pytest.fixture
def root(tmp_path, tiny_tokenizer):  # noqa: F811
    return make_root(tmp_path, tiny_tokenizer)


def test_an_edited_text_cache_entry_is_extracted_again(root):
    pdfs = root / "pdfs"
    pdfs.mkdir()
    for n in range(3):
        write_text_pdf(pdfs / f"p{n}.pdf", [english_page(n), english_page(n + 10)])
    pdf_source = {"sources": [{"kind": "pdf", "path": str(pdfs)}]}
    first, _ = _run(root, "a", **pdf_source)
    (entry, *_) = sorted((root / "cache" / "text").rglob("*.json"))
    record = json.loads(entry.read_text())
    record["pages"] = ["text that was never in the PDF"] * len(record["pages"])
    entry.write_text(json.dumps(record))
    second, stderr = _run(root, "b", **pdf_source)
    assert "does not match its checksum" in stderr and entry.name in stderr
    assert second["data"]["sha256"] == first["data"]["sha256"]
    assert second["final_perplexity"] == pytest.approx(first["final_perplexity"], rel=1e-6)


def test_flipped_arrow_token_ids_are_rebuilt_not_trained_on(root):
    first, _ = _run(root, "a", **ARROW)
    files = [p for p in (root / "cache" / "arrow").rglob("*.arrow") if p.stat().st_size > 300]
    assert files
    for path in files:
        _flip(path, -200)
    second, stderr = _run(root, "b", **ARROW)
    assert "rebuilding it" in stderr and "sha256" in stderr
    assert second["data"]["sha256"] == first["data"]["sha256"] and second["train"]["losses"] == first["train"]["losses"]


def test_a_text_edited_at_the_same_size_with_its_mtime_restored_is_read_again(root):
    _run(root, "a", **ARROW)
    target = root / "notes" / "note0.txt"
    stamp = target.stat()
    target.write_text(target.read_text().replace("e", "a"))
    os.utime(target, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert (target.stat().st_size, target.stat().st_mtime_ns) == (stamp.st_size, stamp.st_mtime_ns)
    arrow, _ = _run(root, "b", **ARROW)
    memory, _ = _run(root, "c")  # the in-memory path reads every file each run
    assert arrow["data"]["sha256"] == memory["data"]["sha256"]
    assert arrow["train"]["losses"] == pytest.approx(memory["train"]["losses"], rel=1e-5)


def test_temp_files_of_a_killed_arrow_build_are_removed_by_the_next_run(root):
    _run(root, "a", **ARROW)
    cache = root / "cache" / "arrow"
    leftovers = [next(cache.rglob("tokens")) / "tmpab12cd", cache / "records" / "x" / "0.0.0.incomplete"]
    leftovers[1].mkdir(parents=True)
    leftovers[0].write_bytes(b"half a file")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    manifest = next(cache.rglob("tokens-*.sha256.json"))
    killed = manifest.with_name(f".{manifest.name}.{dead.pid}-0badcafe.tmp")  # a manifest write killed half-way
    killed.write_text('{"tokens-')
    _, stderr = _run(root, "b", **ARROW)
    assert not any(p.exists() for p in [*leftovers, killed])
    assert "not reused" not in stderr  # the caches of the unchanged notes themselves are whole: reused, not rebuilt


@pytest.fixture
def embedded(tmp_path, monkeypatch, root):
    """The embedded model's GGUF conversion, played by the tiny base (the real one takes ~25 s and 540 MB)."""
    monkeypatch.setenv("MEMFIT_CACHE", str(tmp_path / "cache"))
    from memfit import models

    monkeypatch.setattr(models, "_gguf_folder", lambda: root / "base")
    load_model, load_tokenizer = (transformers.AutoModelForCausalLM.from_pretrained,
                                  transformers.AutoTokenizer.from_pretrained)

    def converted(path, gguf_file=None, **kwargs):
        model = load_model(path, **kwargs)
        if gguf_file is None:  # memfit loading the converted copy
            return model
        # as if dequantized from GGUF: memfit drops the quantizer before saving the copy
        model.hf_quantizer = SimpleNamespace(remove_quantization_config=lambda m: setattr(m, "hf_quantizer", None))
        return model

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", converted)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda path, gguf_file: load_tokenizer(path))
    return models


def test_flipped_bits_in_the_converted_model_cache_are_converted_again(embedded, caplog):
    import memfit

    clean = {k: v.clone() for k, v in memfit.load_model().state_dict().items()}  # not the memory-mapped file
    weights = embedded.embedded_model_dir() / "model.safetensors"
    _flip(weights, weights.stat().st_size - 1000)  # inside a weight: it would load and score another number
    with caplog.at_level("WARNING", logger="memfit.models"):
        again = memfit.load_model().state_dict()
    assert "converting it again" in caplog.text and str(weights) in caplog.text
    assert all(torch.equal(clean[k], again[k]) for k in clean)
