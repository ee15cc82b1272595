"""memfit.recipes.held_out: the evaluation sample stays within eval_max_tokens; the window within the model."""
from memfit.recipes.held_out import HeldOut, fitted_context, sample_chunk


def test_the_sampled_piece_never_exceeds_the_token_sample():
    assert sample_chunk(100_000_000, 4096) == 4096  # one huge window scored 21,976 tokens for a 4,096 sample
    assert sample_chunk(256, 4096) == 256
    assert sample_chunk(512, None) == 512  # every token: whole windows


def test_a_window_beyond_the_model_is_clamped_with_a_line():
    said = []
    assert fitted_context(100_000_000, 2048, said.append) == 2048
    assert "exceeds the model's max_position_embeddings (2048)" in said[0]
    assert fitted_context(512, 2048, said.append) == 512 and len(said) == 1
    assert fitted_context(512, None, said.append) == 512


def test_a_validation_split_records_its_own_numbers_and_names_its_documents():
    """HeldOut over the validation documents: its sample note says 'validation', and split_record reports the
    split's before/after apart from the test record (what results.json's "validation" holds)."""
    from types import SimpleNamespace

    from memfit.recipes.sections import EvalSection

    class Tokenizer:
        pad_token_id = 0

        def decode(self, ids):
            return "x" * len(ids)

    docs = [{"name": f"d{i}", "input_ids": list(range(1, 41)), "n_bytes": 40} for i in range(3)]
    settings = EvalSection(eval_context=16, eval_max_tokens=32, eval_batch_size=2)
    held = HeldOut(docs, Tokenizer(), settings, None, False, print, "validation")
    assert "of the validation documents" in held.info["note"] and held.info["validation_tokens"] == 120
    base = SimpleNamespace(perplexity=40.0, to_dict=lambda: {"perplexity": 40.0})
    record = held.split_record(base, {"perplexity": 30.0, "tokens": 30}, None)
    assert record["change_pct"] == -25.0 and record["evaluated"] == "before and after training"
    assert record["scored"] == "all tokens" and record["final"] == {"perplexity": 30.0, "tokens": 30}
    assert held.split_record(base, {"perplexity": 30.0}, 5)["evaluated"] == "every 5 steps (train.evals)"
