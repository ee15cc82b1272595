"""Document-level split: every document lands in exactly one of train / validation / test."""
from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from memfit.data.errors import DataError


@dataclass(frozen=True)
class SplitPlan:
    train: list[str]
    validation: list[str]
    test: list[str]

    def of(self, name: str) -> str:
        for split in ("train", "validation", "test"):
            if name in getattr(self, split):
                return split
        raise KeyError(name)


def split_sizes(n_documents: int, test_fraction: float, min_test_docs: int, validation_fraction: float = 0.0,
                min_validation_docs: int = 1) -> tuple[int, int, int]:
    """(train, validation, test) document counts; test and validation get at least their minimum."""
    if not 0.0 <= test_fraction < 1.0 or not 0.0 <= validation_fraction < 1.0:
        raise DataError(f"test_fraction ({test_fraction}) and validation_fraction ({validation_fraction}) "
                        "must be in [0, 1)")
    n_test = max(min_test_docs, round(test_fraction * n_documents))
    n_validation = max(min_validation_docs, round(validation_fraction * n_documents)) if validation_fraction else 0
    n_train = n_documents - n_test - n_validation
    if n_train < 1:
        raise DataError(f"{n_documents} usable documents cannot be split into {n_test} test + {n_validation} "
                        "validation + at least 1 training document; add PDFs to the folder or lower "
                        "test_fraction / min_test_docs / validation_fraction.")
    return n_train, n_validation, n_test


def split_documents(names: Sequence[str], *, test_fraction: float = 0.2, min_test_docs: int = 1,
                    validation_fraction: float = 0.0, min_validation_docs: int = 1, seed: int = 0) -> SplitPlan:
    """Shuffle the *sorted* names with `seed`, so the split depends on the seed and the set of files only
    (not on directory listing order), then cut test, validation and train off the shuffled list."""
    if len(set(names)) != len(names):
        raise DataError("document names must be unique to split by document")
    _, n_validation, n_test = split_sizes(len(names), test_fraction, min_test_docs, validation_fraction,
                                          min_validation_docs)
    order = sorted(names)
    random.Random(seed).shuffle(order)
    return SplitPlan(train=sorted(order[n_test + n_validation:]),
                     validation=sorted(order[n_test:n_test + n_validation]), test=sorted(order[:n_test]))
