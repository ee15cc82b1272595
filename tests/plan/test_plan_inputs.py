"""Sequence lengths the planner refuses up front, in the library and through `memfit plan`."""
import pytest

from memfit import Stack
from memfit.cli import main
from memfit.plan.planner import check_seq_lens, plan
from _models import tiny_model


@pytest.mark.parametrize("seq", [-1, 0])
def test_memfit_plan_refuses_a_non_positive_seq_len_in_one_line(seq, capsys):
    assert main(["plan", "--model-config", "llama-3.2-1b", "--stack", "lora", "--seq-len", str(seq)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"memfit: argument --seq-len: {seq} is below 8") and err.count("\n") == 1


def test_plan_refuses_a_seq_len_beyond_the_model(tmp_path):
    with pytest.raises(ValueError, match=r"sequence length 300 exceeds the model's max_position_embeddings \(256\)"):
        plan(tiny_model(), Stack.from_spec("lora"), seq_len=300, cache_dir=tmp_path)
    check_seq_lens([256], 256)
