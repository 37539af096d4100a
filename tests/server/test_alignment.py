import numpy as np

from fedxalign.server.aggregation import ModalityPrototypes
from fedxalign.server.alignment import align_prototypes, alignment_score
from fedxalign.shared.runconfig import AlignConfig


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def rotated_pair(seed=0, c=5, d=16, noise=0.05, counts=None):
    rng = np.random.default_rng(seed)
    eeg = unit(rng.standard_normal((c, d)))
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    ecg = unit(eeg @ q.T + noise * rng.standard_normal((c, d)))
    counts = np.full(c, 50.0) if counts is None else counts
    return ModalityPrototypes(eeg, np.full(c, 50.0), 2), ModalityPrototypes(ecg, counts, 2)


def test_alignment_raises_the_score_and_keeps_classes_apart():
    eeg, ecg = rotated_pair()
    res = align_prototypes({"eeg": eeg, "ecg": ecg}, AlignConfig())
    assert res.score_before < 0.4
    assert res.score_after > 0.8 and res.score_after > res.score_before + 0.4
    mapped = unit(ecg.prototypes @ res.maps["ecg"].T)
    nearest = (mapped @ res.anchors.T).argmax(1)
    assert nearest.tolist() == list(range(5))  # every ECG class lands on its own anchor
    off_diag = res.anchors @ res.anchors.T - np.eye(5)
    assert off_diag.max() < 0.9  # anchors stay distinct
    assert np.allclose(res.maps["eeg"], np.eye(16))


def test_map_stays_near_orthogonal():
    eeg, ecg = rotated_pair(seed=1)
    g = align_prototypes({"eeg": eeg, "ecg": ecg}, AlignConfig()).maps["ecg"]
    assert np.abs(g.T @ g - np.eye(16)).max() < 0.3


def test_disabled_alignment_changes_nothing():
    eeg, ecg = rotated_pair(seed=2)
    res = align_prototypes({"eeg": eeg, "ecg": ecg}, AlignConfig(enabled=False))
    assert res.score_after == res.score_before and np.allclose(res.maps["ecg"], np.eye(16))


def test_class_missing_in_one_modality():
    eeg, ecg = rotated_pair(seed=3, counts=np.array([50.0, 50, 50, 50, 0]))
    ecg = ModalityPrototypes(np.where(ecg.present[:, None], ecg.prototypes, 0), ecg.counts, 2)
    res = align_prototypes({"eeg": eeg, "ecg": ecg}, AlignConfig())
    assert np.isfinite(res.anchors).all() and res.score_after > 0.8


def test_score_definition():
    a = np.eye(3)
    assert alignment_score(a, a, np.ones(3, bool)) == 1.0
    assert alignment_score(a, a[[1, 2, 0]], np.ones(3, bool)) == -0.5
