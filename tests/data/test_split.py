"""The document-level split: each document in exactly one split, decided by the seed and the set of names only."""
from __future__ import annotations

import pytest

from memfit.data.errors import DataError
from memfit.data.split import SplitPlan, split_documents, split_sizes

NAMES = [f"doc-{n:02d}.pdf" for n in range(10)]


def test_every_document_lands_in_exactly_one_split():
    plan = split_documents(NAMES, test_fraction=0.2, validation_fraction=0.1, seed=3)
    assert (len(plan.train), len(plan.validation), len(plan.test)) == (7, 1, 2)
    assert sorted(plan.train + plan.validation + plan.test) == NAMES
    assert all(part == sorted(part) for part in (plan.train, plan.validation, plan.test))
    assert {plan.of(name) for name in plan.test} == {"test"} and plan.of(plan.train[0]) == "train"
    with pytest.raises(KeyError):
        plan.of("not-a-document.pdf")


def test_the_seed_decides_and_the_listing_order_does_not():
    assert split_documents(NAMES, seed=3) == split_documents(list(reversed(NAMES)), seed=3)
    assert len({tuple(split_documents(NAMES, seed=seed).test) for seed in range(6)}) > 1
    assert split_documents(NAMES, seed=1) == split_documents(NAMES[5:] + NAMES[:5], seed=1)  # the same set


def test_minimum_sizes_round_fractions_and_floors():
    assert split_sizes(10, 0.2, 1) == (8, 0, 2)
    assert split_sizes(10, 0.0, 1) == (9, 0, 1)  # the minimum test document, whatever the fraction
    assert split_sizes(3, 0.2, 2) == (1, 0, 2)
    assert split_sizes(10, 0.2, 1, validation_fraction=0.01) == (7, 1, 2)  # the minimum validation document
    assert isinstance(split_documents(NAMES[:3], min_test_docs=2), SplitPlan)


@pytest.mark.parametrize("names, settings, says", [
    (["only.pdf"], {}, r"1 usable documents cannot be split into 1 test \+ 0 validation"),
    (["a.pdf", "a.pdf", "b.pdf"], {}, r"document names must be unique"),
    (NAMES, {"test_fraction": 1.0}, r"must be in \[0, 1\)"),
    (NAMES, {"validation_fraction": -0.1}, r"must be in \[0, 1\)"),
])
def test_impossible_splits_are_refused_with_the_fix(names, settings, says):
    with pytest.raises(DataError, match=says):
        split_documents(names, **settings)
