"""`memfit generate`: a finished run's fine-tuned model answers (memfit/generation.py's decode, tested in
tests/test_generation.py), bad settings are one line."""
from __future__ import annotations

from _tiny_run import shared_run
from test_train_command import tiny_tokenizer  # noqa: F401 (the session fixture)

from memfit.cli import main
from memfit.generation import answer


def test_generate_on_a_finished_run(tmp_path_factory, tiny_tokenizer, capsys):  # noqa: F811
    from memfit.recipes.saved_run import load_trained, read_run

    _, run_dir = shared_run(tmp_path_factory, tiny_tokenizer)
    assert main(["generate", str(run_dir), "the ocean", "--max-new-tokens", "6"]) == 0
    said = capsys.readouterr().out.strip()
    model = load_trained(read_run(run_dir))
    # endswith: a library imported earlier in this pytest process may hold a stale handle on the captured stdout
    assert said and said.endswith(answer(model, tiny_tokenizer, "the ocean", max_new_tokens=6))

    capsys.readouterr()  # the loading bar of the comparison above
    assert main(["generate", str(run_dir), "hello", "--chat"]) == 2  # the tiny tokenizer has no template
    assert main(["generate", str(run_dir), "hello", "--temperature", "nan"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "no chat template" in err[0] and "--temperature nan" in err[1]
