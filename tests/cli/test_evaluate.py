"""`memfit eval RUN_DIR` as a real subprocess on a tiny finished run: it reproduces the run's own numbers on the
recorded test documents, the adapter changes the score, added files do not change the test set, and a missing
document or a mismatched adapter is refused with one line and exit code 2."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from _tiny_run import memfit, results, run_env, shared_run, write_pdf
from test_train_command import tiny_tokenizer  # noqa: F401 (the session fixture)


@pytest.fixture
def run(tmp_path_factory, tiny_tokenizer):  # noqa: F811
    return shared_run(tmp_path_factory, tiny_tokenizer)


def pdf_folder(recorded: dict) -> Path:
    """The run's one PDF source folder (its --pdf-dir, recorded as a source)."""
    (source,) = recorded["config"]["data"]["sources"]
    assert source["kind"] == "pdf"
    return Path(source["path"])


def evaluate(root: Path, *args: str) -> dict:
    done = memfit("eval", *map(str, args), env=run_env(root))
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)  # stdout is the JSON alone: progress and logs went to stderr


def refused(root: Path, *args: str) -> str:
    done = memfit("eval", *map(str, args), env=run_env(root))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and done.stdout == "", done.stderr
    return lines[0]


def test_eval_scores_the_runs_test_documents_with_and_without_the_adapter(run):
    root, run_dir = run
    recorded = results(run_dir)
    tuned = evaluate(root, run_dir)
    assert tuned["scored"] == "adapter" and tuned["test_documents"] == sorted(recorded["data"]["test_sha256"])
    # the run's own window, stride and token sample: the run's final number, reproduced from the saved adapter
    assert tuned["perplexity"] == pytest.approx(recorded["final_perplexity"], rel=1e-5)
    assert tuned["tokens"] == recorded["evaluation"]["scored_tokens"]
    base = evaluate(root, run_dir, "--base")
    assert base["perplexity"] == pytest.approx(recorded["base_perplexity"], rel=1e-5)
    assert abs(base["perplexity"] - tuned["perplexity"]) > 1e-3 * base["perplexity"]  # before: the base, twice
    merged = evaluate(root, run_dir, "--merge")  # fp32 run: merging changes nothing but rounding
    assert merged["scored"] == "merged" and merged["perplexity"] == pytest.approx(tuned["perplexity"], rel=1e-4)


def test_a_moved_run_still_evaluates_to_its_own_number(run, tmp_path):
    """Runs travel: results.json records absolute data and model paths, and the adapter is found beside it."""
    root, run_dir = run
    recorded = results(run_dir)
    moved = tmp_path / "elsewhere" / run_dir.name
    moved.parent.mkdir()
    shutil.move(run_dir, moved)
    try:
        tuned = evaluate(root, moved)
    finally:
        shutil.move(moved, run_dir)  # the shared run, put back for the other tests
    assert tuned["perplexity"] == pytest.approx(recorded["final_perplexity"], rel=1e-5)


def test_an_added_file_does_not_change_the_test_set(run):
    from memfit.data import split_documents

    root, run_dir = run
    recorded = results(run_dir)
    pdfs = pdf_folder(recorded)
    names = sorted(f"{pdfs}::{p.name}" for p in pdfs.glob("*.pdf"))
    # a name for which re-splitting the folder (what `memfit eval --data` did) picks another test document
    added = next(name for name in ("a-added.pdf", "m-added.pdf", "z-added.pdf")
                 if split_documents([*names, f"{pdfs}::{name}"]).test != recorded["data"]["test_documents"])
    write_pdf(pdfs, added, 50)
    try:
        after = evaluate(root, run_dir)
    finally:
        (pdfs / added).unlink()
    assert after["test_documents"] == recorded["data"]["test_documents"]
    assert after["perplexity"] == pytest.approx(recorded["final_perplexity"], rel=1e-5)


def test_a_mismatched_adapter_is_refused(run, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model

    from _models import tiny_model

    root, run_dir = run
    other = tmp_path / "other-run"
    shutil.copytree(run_dir, other, ignore=shutil.ignore_patterns("checkpoints", "logs"))
    shutil.rmtree(other / "adapter")
    torch.manual_seed(1)  # an adapter trained for a wider model, dropped into the run's adapter folder
    foreign = get_peft_model(tiny_model(hidden_size=96), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    foreign.save_pretrained(other / "adapter")
    line = refused(root, other)
    assert "does not fit this model" in line and "load that one" in line


def _parse(*argv: str):
    import argparse

    from memfit.cli.evaluate import add_eval_parser

    parser = argparse.ArgumentParser()
    add_eval_parser(parser.add_subparsers())
    return parser.parse_args(["eval", *argv])


def _eval_error(*argv: str) -> str:
    """What `memfit eval ARGV` refuses with, in-process (main prints it as `memfit: ...` with exit code 2)."""
    args = _parse(*argv)
    with pytest.raises(ValueError) as refusal:
        args.func(args)
    assert "\n" not in str(refusal.value)
    return str(refusal.value)


def test_a_missing_test_document_is_refused(run, monkeypatch):
    root, run_dir = run
    monkeypatch.setenv("MEMFIT_CACHE", run_env(root)["MEMFIT_CACHE"])
    pdfs = pdf_folder(results(run_dir))
    name = results(run_dir)["data"]["test_documents"][0]
    file = name.split("::")[-1]  # a document is named <source>::<file>
    (pdfs / file).rename(pdfs.parent / file)
    try:
        says = _eval_error(str(run_dir))
    finally:
        (pdfs.parent / file).rename(pdfs / file)
    assert f"test document {name!r}" in says and "is missing from" in says and "restore it" in says


@pytest.mark.parametrize("args, says", [
    (["{missing}"], "is not a memfit run directory (no results.json)"),
    ([], "needs a run directory"),
    # a bad --context is refused by the parser now (tests/cli/test_validation.py)
])
def test_user_errors_are_one_line(run, tmp_path, args, says):
    _, run_dir = run
    assert says in _eval_error(*(a.format(missing=tmp_path / "nope", run=run_dir) for a in args))


def test_data_folder_form_scores_every_document_of_the_folder(run, monkeypatch, capsys):
    root, run_dir = run
    monkeypatch.setenv("MEMFIT_CACHE", run_env(root)["MEMFIT_CACHE"])
    config = results(run_dir)["config"]
    args = _parse("--data", str(pdf_folder(results(run_dir))), "--model", config["model"]["name"], "--context", "32")
    assert args.func(args) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["documents"] == ["land.pdf", "ocean.pdf"] and scored["scored"] == "model"
    assert scored["perplexity"] > 1 and scored["context_length"] == 32


# ---- integrity: what eval and merge verify before scoring or writing anything ---------------------------------------

def sealed_copy(run_dir: Path, dest: Path) -> Path:
    """A copy of the run, with its own copy of the base model, carrying every record this memfit verifies: the base
    weights' fingerprint and results.json's checksum, the adapter's manifest, all recomputed for the copied base.
    The copy's files may be damaged freely."""
    from memfit.core.files import atomic_write_json
    from memfit.core.integrity import with_checksum, write_manifest
    from memfit.recipes.saved_run import BASE_FINGERPRINT, base_fingerprint

    recorded = results(run_dir)
    base = dest / "base"
    shutil.copytree(recorded["config"]["model"]["name"], base)
    other = dest / "run"
    shutil.copytree(run_dir, other, ignore=shutil.ignore_patterns("checkpoints", "logs"))
    write_manifest(other / "adapter")
    recorded["config"]["model"]["name"] = str(base)
    recorded[BASE_FINGERPRINT] = base_fingerprint(str(base))
    atomic_write_json(other / "results.json", with_checksum(recorded), default=str)
    return other


def reinitialise(model_dir: Path) -> None:
    """New random weights of the same shapes, saved over the old ones in the same folder."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(1)
    AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir)).save_pretrained(model_dir)


def test_eval_and_merge_refuse_a_base_reinitialised_in_the_same_folder(run, tmp_path, monkeypatch):
    from memfit.recipes.merge import merge_run
    from memfit.recipes.saved_run import RunError, check_base, read_run

    root, run_dir = run
    monkeypatch.setenv("MEMFIT_CACHE", run_env(root)["MEMFIT_CACHE"])
    other = sealed_copy(run_dir, tmp_path)
    assert check_base(read_run(other), required=True)  # the sealed copy itself is accepted
    reinitialise(tmp_path / "base")  # same shapes: only the content fingerprint can tell
    line = refused(root, other)
    assert f"base model {tmp_path / 'base'} is not the one run" in line and "restore the original weights" in line
    with pytest.raises(RunError, match="is not the one run"):
        merge_run(other, tmp_path / "merged")
    assert not (tmp_path / "merged").exists()


def test_eval_and_merge_refuse_an_adapter_with_one_flipped_bit(run, tmp_path, monkeypatch):
    from memfit.recipes.merge import merge_run
    from memfit.training.checkpoint import CheckpointError

    root, run_dir = run
    monkeypatch.setenv("MEMFIT_CACHE", run_env(root)["MEMFIT_CACHE"])
    other = sealed_copy(run_dir, tmp_path)
    weights = other / "adapter" / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-7] ^= 0x04  # inside a LoRA matrix: loads fine and scores another number without the manifest
    weights.write_bytes(bytes(data))
    line = refused(root, other)
    assert f"adapter {other / 'adapter'} is damaged: {weights} does not match its recorded sha256" in line
    with pytest.raises(CheckpointError, match="adapter_model.safetensors does not match"):
        merge_run(other, tmp_path / "merged")


def test_a_hand_edited_results_json_is_noticed(run, tmp_path, monkeypatch):
    from memfit.recipes.saved_run import RunError, read_run

    _, run_dir = run
    other = sealed_copy(run_dir, tmp_path)
    file = other / "results.json"
    file.write_text(file.read_text().replace('"eval_context": 32', '"eval_context": 16'))
    with pytest.raises(RunError, match="is not the record the run wrote: its content does not match its checksum"):
        read_run(other)
