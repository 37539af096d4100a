"""The per-site read-out: its regularisation is chosen on whole held-out subjects, the way the test split holds them out."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fedxalign.simulations.baseline import READOUT_CS, balanced_accuracy, fit_readout


def subjects_with_offsets(n_subjects: int, per: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two informative columns among 40, and a per-subject offset on every column: few windows per dimension, so
    a weak regulariser fits the subjects' offsets and a strong one generalises to a new subject."""
    y = rng.integers(0, 3, n_subjects * per)
    groups = np.repeat([f"p{i}" for i in range(n_subjects)], per)
    x = 1.5 * rng.standard_normal((n_subjects, 40))[np.repeat(np.arange(n_subjects), per)] + rng.standard_normal((len(y), 40))
    x[:, :2] += 0.8 * np.c_[y == 1, y == 2]
    return x, y, groups


def chosen_c(model) -> float:
    return model.named_steps["logisticregression"].C


def leave_one_subject_out_choice(x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> float:
    """The protocol written out by hand: per C, the mean over held-out subjects of the balanced accuracy."""
    means = []
    for c in READOUT_CS:
        scores = []
        for g in np.unique(groups):
            out = groups == g
            m = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000, class_weight="balanced"))
            scores.append(balanced_accuracy(y[out], m.fit(x[~out], y[~out]).predict(x[out])))
        means.append(np.mean(scores))
    return READOUT_CS[int(np.argmax(means))]


def test_the_read_outs_c_is_the_best_by_leaving_one_subject_out_and_not_the_weakest():
    x, y, groups = subjects_with_offsets(5, 24, np.random.default_rng(0))
    model = fit_readout(x, y, groups)
    assert chosen_c(model) == leave_one_subject_out_choice(x, y, groups)
    assert chosen_c(model) < READOUT_CS[-1]  # these data reward regularisation: a fixed C = 1 would not


def test_with_fewer_than_three_subjects_the_read_out_keeps_c_1():
    x, y, groups = subjects_with_offsets(2, 40, np.random.default_rng(1))
    assert chosen_c(fit_readout(x, y, groups)) == 1.0
