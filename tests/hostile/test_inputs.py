"""Hostile user, inputs and flags (issue 30): data the run used to train on as is (four identical files, a binary
file that is valid UTF-8, chat turns with null content) and settings it used to accept (an evaluation window past
the model, a spec with no strategy, a key given twice, planner numbers out of range)."""
from __future__ import annotations

import json

import pytest

from _hostile import make_root, memfit, recipe, refused, results, tiny_tokenizer, train  # noqa: F401


@pytest.fixture
def root(tmp_path, tiny_tokenizer):  # noqa: F811
    return make_root(tmp_path, tiny_tokenizer)


def test_four_identical_text_files_train_once_and_a_binary_text_file_is_refused(root):
    notes = root / "notes"
    for n in range(4):
        (notes / f"same-{n}.txt").write_text("The same paragraph about sea ice, saved four times.\n" * 8)
    (notes / "blob.txt").write_bytes(bytes(range(0, 128)) * 20)  # 7-bit, valid UTF-8, NULs and control bytes
    run_dir = train(root, "--test-fraction", "0.5")
    data = results(run_dir)["data"]
    skipped = {json.dumps(s) for s in data["skipped"]}
    for copy in ("same-1.txt", "same-2.txt", "same-3.txt"):  # one kept, the others named with the one they repeat
        assert any(copy in s and "same-0.txt" in s for s in skipped), skipped
    assert any("blob.txt" in s and "binary" in s for s in skipped), skipped
    assert data["documents"] == 6  # five notes and one copy of the paragraph
    summary = (run_dir / "summary.md").read_text()
    assert "same-3.txt" in summary and "blob.txt" in summary


def test_chat_turns_with_null_content_are_skipped_with_file_and_line(root):
    rows = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": None}]},
            {"messages": [{"role": "user", "content": "hi there"}, {"role": "assistant", "content": "hello"}]}]
    (root / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    done = memfit(root, "data", "inspect", root / "chat.jsonl")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "chat.jsonl: line 1: turn 2 of 'messages' holds no text (None)" in done.stdout + done.stderr
    assert "None" not in (done.stdout + done.stderr).replace("(None)", "")


def test_an_evaluation_window_past_the_model_is_clamped_and_eval_max_tokens_kept(root):
    done = memfit(root, "train", recipe(root), "--eval-context", "100000000")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "100000000" in done.stderr and "256" in done.stderr  # said, not silently changed
    evaluation = results(next((root / "runs").iterdir()))["evaluation"]
    assert evaluation["context_length"] <= 256 and evaluation["scored_tokens"] <= 64


@pytest.mark.parametrize("args, says", [
    (["--stack", "+++"], "+++"),
    (["--stack", " + "], "strateg"),
])
def test_a_stack_spec_without_a_strategy_is_refused(root, args, says):
    refused(memfit(root, "train", recipe(root), *args), says)
    assert not (root / "runs").exists()


def test_a_yaml_key_given_twice_is_refused(root):
    path = recipe(root)
    path.write_text(path.read_text() + "lr: 0.5\n")
    refused(memfit(root, "train", path), "lr")
    assert not (root / "runs").exists()


@pytest.mark.parametrize("flag, value", [("--target-effective-batch", "-1"), ("--margin", "5"), ("--margin", "nan"),
                                         ("--eval-batch-size", "0"), ("--probe-budget", "-1")])
def test_planner_numbers_out_of_range_are_refused_before_any_work(root, flag, value):
    line = refused(memfit(root, "plan", "--model", root / "base", flag, value), flag)
    assert value in line
