"""memfit.recipes.limits: the one rule for every run number - finite, and counts that torch can index."""
import math

from memfit.recipes.limits import MAX_COUNT, number_problem


def test_non_finite_numbers_and_overflowing_counts_are_named():
    assert "not a finite number" in number_problem(math.inf) and "not a finite number" in number_problem(math.nan)
    assert "beyond the largest count" in number_problem(MAX_COUNT + 1)
    assert "beyond the largest count" in number_problem(-(MAX_COUNT + 1))


def test_ordinary_values_pass():
    for value in (0, 1, MAX_COUNT, 3e-3, -1.5, True, "text", None, [1, 2]):
        assert number_problem(value) is None
