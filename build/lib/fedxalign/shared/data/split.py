"""Train/validation/test assignment by subject, so no subject's windows land on two sides."""

from __future__ import annotations

from typing import Iterable

import numpy as np

SPLITS = ("train", "val", "test")


def split_subjects(subjects: Iterable[str], val_frac: float = 0.15, test_frac: float = 0.15, seed: int = 0) -> dict[str, str]:
    """Seeded shuffle of the distinct subjects, then whole subjects per split.

    With three or more subjects, validation and test get at least one each (train keeps at
    least one); with two, one trains and one tests; a single subject only trains.
    """
    unique = sorted(set(subjects))
    rng = np.random.default_rng(seed)
    order = [unique[i] for i in rng.permutation(len(unique))]
    n = len(order)
    if n >= 3:
        n_test = max(1, int(round(test_frac * n)))
        n_val = max(1, int(round(val_frac * n)))
        while n_test + n_val > n - 1:
            if n_val >= n_test and n_val > 1:
                n_val -= 1
            elif n_test > 1:
                n_test -= 1
            else:
                break
    else:
        n_test, n_val = (1 if n == 2 else 0), 0
    out = {}
    for i, subject in enumerate(order):
        out[subject] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    return out
