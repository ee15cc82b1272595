"""memfit.training.trackers.log_evaluation: the one eval/perplexity curve and the named scalars beside it."""
from __future__ import annotations

from memfit.training.trackers import log_evaluation


class _Recorder:
    def __init__(self):
        self.logged: list[tuple[dict, int]] = []

    def log(self, values, step):
        self.logged.append((values, step))


def test_a_named_evaluation_can_stay_off_the_curve():
    """With a validation split the curve holds the validation documents: the test's base and final are logged
    under their names only, so one curve never mixes two splits."""
    acc = _Recorder()
    log_evaluation(acc, {"perplexity": 30.0, "bits_per_byte": 1.2}, 0, "base")
    log_evaluation(acc, {"perplexity": 31.0, "bits_per_byte": None}, 0, "base", curve=False)
    log_evaluation(acc, {"perplexity": 29.0}, 3)
    assert acc.logged == [
        ({"eval/perplexity": 30.0, "eval/bits_per_byte": 1.2, "eval/base_perplexity": 30.0,
          "eval/base_bits_per_byte": 1.2}, 0),
        ({"eval/base_perplexity": 31.0}, 0),
        ({"eval/perplexity": 29.0}, 3)]
