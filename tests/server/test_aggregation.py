import numpy as np
import pytest

from server.aggregation import aggregate_prototypes, fedavg
from shared.errors import ConfigError


def test_weighted_mean_ignores_sites_that_did_not_release_a_class():
    a = np.array([[1.0, 0.0], [0.0, 1.0]])
    b = np.array([[0.0, 1.0], [5.0, 5.0]])
    out = aggregate_prototypes([a, b], [np.array([30.0, 10.0]), np.array([10.0, 0.0])], "mean")
    assert np.allclose(out.prototypes[0], [0.75, 0.25])
    assert np.allclose(out.prototypes[1], [0.0, 1.0])  # b's class 1 was suppressed (count 0)
    assert out.counts.tolist() == [40.0, 10.0] and out.n_sites == 2


@pytest.mark.parametrize("method", ["median", "trimmed_mean"])
def test_robust_aggregators_resist_one_poisoned_site(method):
    honest = [np.array([[1.0, 0.0]]) + 0.01 * i for i in range(4)]
    poisoned = [np.array([[1000.0, -1000.0]])]
    out = aggregate_prototypes(honest + poisoned, [np.array([10.0])] * 5, method, trim=0.2)
    assert np.allclose(out.prototypes[0], [1.02, 0.02], atol=0.02)
    mean = aggregate_prototypes(honest + poisoned, [np.array([10.0])] * 5, "mean")
    assert mean.prototypes[0, 0] > 100


def test_unknown_aggregator():
    with pytest.raises(ConfigError, match="'aggregator' parameter"):
        aggregate_prototypes([np.zeros((1, 2))], [np.ones(1)], "mode")


def test_fedavg_is_size_weighted():
    out = fedavg([{"w": np.array([0.0, 0.0])}, {"w": np.array([4.0, 8.0])}], [3.0, 1.0])
    assert np.allclose(out["w"], [1.0, 2.0])
