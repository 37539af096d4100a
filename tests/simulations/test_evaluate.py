"""The per-site probe and its pooled form: same windows as the feature baseline, one balanced accuracy per modality."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import balanced_accuracy_score

from fedxalign.simulations.baseline import readout_predictions
from fedxalign.simulations.evaluate import SiteEmbeddings, evaluate, pooled, probe_predictions


def site(name: str, modality: str, y: np.ndarray, split: np.ndarray, rng: np.random.Generator,
         noise: float = 0.6) -> tuple[SiteEmbeddings, np.ndarray]:
    """Class-coded embeddings with noise, split by the given assignment; also the raw inputs for the feature read-out."""
    z = np.eye(5)[y] * 2.0 + noise * rng.standard_normal((len(y), 5))
    test = split == "test"
    return SiteEmbeddings(name, modality, z[test], y[test], np.eye(5), np.ones(5, bool), z[~test], y[~test], subjects(len(y))[~test]), z


def subjects(n: int, per: int = 30) -> np.ndarray:
    return np.array([f"s{i // per}" for i in range(n)])


def test_the_probe_scores_the_same_windows_in_the_same_order_as_the_feature_read_out():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 200)  # stage 4 only among the test windows: neither read-out can score it
    y[-5:] = 4
    split = np.array(["train"] * 120 + ["val"] * 30 + ["test"] * 50)
    e, z = site("a", "eeg", y, split, rng)
    truth, pred = probe_predictions(e)
    f_truth, f_pred = readout_predictions(z, y, split, subjects(len(y)))
    assert 4 not in truth and len(truth) == 45
    np.testing.assert_array_equal(truth, f_truth)
    np.testing.assert_array_equal(pred, f_pred)  # same inputs, same read-out: same predictions


def test_the_pooled_probe_is_one_balanced_accuracy_over_every_sites_windows_not_the_mean_of_sites():
    rng = np.random.default_rng(1)
    split = np.array(["train"] * 150 + ["test"] * 60)
    y_a = np.r_[rng.integers(0, 4, 150), np.zeros(30, int), np.ones(29, int), [2]]  # one test window of stage 2
    y_b = np.r_[rng.integers(0, 4, 150), np.full(30, 2), np.full(30, 3)]
    a, _ = site("a", "ecg", y_a, split, rng, noise=1.2)
    b, _ = site("b", "ecg", y_b, split, rng, noise=1.2)
    other, _ = site("c", "eeg", y_b, split, rng)  # evaluate() scores both modalities
    out = evaluate([a, b, other], 5)
    preds = {s: probe_predictions(e) for s, e in (("a", a), ("b", b))}
    truth = np.concatenate([preds["a"][0], preds["b"][0]])
    guess = np.concatenate([preds["a"][1], preds["b"][1]])
    assert out["probe_pooled_ecg"] == balanced_accuracy_score(truth, guess)
    assert out["probe_pooled_ecg"] != out["probe_ecg"]  # the mean of the two sites' own scores
    assert out["probe_ecg"] == np.mean([balanced_accuracy_score(*preds[s]) for s in ("a", "b")])
    stored = out["probe_predictions_site"]["a"]
    assert stored["modality"] == "ecg" and stored["y"] == preds["a"][0].tolist() and stored["pred"] == preds["a"][1].tolist()


def test_pooling_skips_sites_without_scored_windows_and_is_nan_without_any():
    y, p = np.array([0, 1, 1]), np.array([0, 1, 0])
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    assert pooled({"a": (y, p), "b": empty}, ["a", "b"]) == balanced_accuracy_score(y, p)
    assert np.isnan(pooled({"b": empty}, ["b"]))
