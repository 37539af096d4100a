import math

import numpy as np
import pytest

from fedxalign.shared.privacy.config import PrivacyConfig
from fedxalign.shared.privacy.ledger import PrivacyLedger
from fedxalign.shared.privacy.release import add_release_noise, release_prototypes


def unit_rows(n, d, rng):
    z = rng.standard_normal((n, d))
    return z / np.linalg.norm(z, axis=1, keepdims=True)


def test_noiseless_release_is_the_class_means():
    rng = np.random.default_rng(0)
    z, y = unit_rows(60, 8, rng), np.repeat([0, 1, 2], 20)
    rel = release_prototypes(z, y, 4, clip=1.0, noise_multiplier=3.0, min_count=5, rng=rng, ledger=None)
    for c in range(3):
        assert np.allclose(rel.prototypes[c], z[y == c].mean(0), atol=1e-6)
    assert rel.counts.tolist() == [20, 20, 20, 0] and rel.present.tolist() == [True, True, True, False]
    assert not rel.prototypes[3].any()


def test_clipping_bounds_each_contribution():
    z = np.array([[10.0, 0.0], [0.0, 0.5]])
    rel = release_prototypes(z, np.array([0, 0]), 1, clip=1.0, noise_multiplier=1.0, min_count=1, rng=np.random.default_rng(0))
    assert np.allclose(rel.prototypes[0], [0.5, 0.25])


def test_noise_has_the_configured_scale():
    rng = np.random.default_rng(1)
    sums, counts = np.zeros((2000, 16)), np.full(2000, 50.0)
    noisy_sums, noisy_counts = add_release_noise(sums, counts, clip=0.5, noise_multiplier=3.0, rng=rng)
    assert np.std(noisy_sums) == pytest.approx(1.5, rel=0.03)
    assert np.std(noisy_counts - 50) == pytest.approx(3.0, rel=0.05)


def test_private_release_is_recorded_and_suppresses_small_classes(tmp_path):
    rng = np.random.default_rng(2)
    ledger = PrivacyLedger(tmp_path / "l.json", PrivacyConfig(epsilon=50))
    z, y = unit_rows(2003, 8, rng), np.r_[np.zeros(2000, int), np.ones(3, int)]
    rel = release_prototypes(z, y, 2, clip=1.0, noise_multiplier=2.0, min_count=20, rng=rng, ledger=ledger)
    assert ledger.entries == [(2.0 / math.sqrt(2), 1.0, 1)] and ledger.counts == {"prototype_release": 1}
    assert rel.present.tolist() == [True, False] and rel.counts[1] == 0
    assert np.linalg.norm(rel.prototypes[0] - z[:2000].mean(0)) < 0.02
