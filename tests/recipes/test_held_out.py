"""memfit.recipes.held_out: the evaluation sample stays within eval_max_tokens; the window within the model."""
from memfit.recipes.held_out import fitted_context, sample_chunk


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
