import numpy as np
import pytest

from fedxalign.server.aggregation import aggregate_prototypes, aggregate_weights, n_trimmed
from fedxalign.shared.runconfig import FederationConfig
from fedxalign.simulations.poisoning import ATTACKS, Scenario, shifts
from fedxalign.shared.errors import ConfigError


def test_weighted_mean_ignores_sites_that_did_not_release_a_class():
    a = np.array([[1.0, 0.0], [0.0, 1.0]])
    b = np.array([[0.0, 1.0], [5.0, 5.0]])
    out = aggregate_prototypes([a, b], [np.array([30.0, 10.0]), np.array([10.0, 0.0])], "mean")
    assert np.allclose(out.prototypes[0], [0.75, 0.25])
    assert np.allclose(out.prototypes[1], [0.0, 1.0])  # b's class 1 was suppressed (count 0)
    assert out.counts.tolist() == [40.0, 10.0] and out.n_sites == 2


@pytest.mark.parametrize("method", ["median", "trimmed_mean", "centered_clip"])
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


def test_fedavg_is_size_weighted_only_under_mean():
    w = [{"w": np.array([0.0, 0.0])}, {"w": np.array([4.0, 8.0])}]
    assert np.allclose(aggregate_weights(w, [3.0, 1.0], "mean")["w"], [1.0, 2.0])
    three = w + [{"w": np.array([1.0, 1.0])}]
    assert np.allclose(aggregate_weights(three, [1.0, 1e9, 1.0], "median")["w"], [1.0, 1.0])  # sizes buy nothing


def test_counts_are_capped():
    a, b = np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])
    out = aggregate_prototypes([a, b], [np.array([100.0]), np.array([1e9])], "mean", count_cap=100.0)
    assert np.allclose(out.prototypes[0], [0.5, 0.5]) and out.counts[0] == 200.0


def test_trimming_drops_at_least_one_site_each_end_from_three():
    assert [n_trimmed(n, 0.2) for n in (2, 3, 4, 5, 10)] == [0, 1, 1, 1, 2]


@pytest.mark.parametrize("attack", ATTACKS)
def test_one_poisoned_site_of_five_moves_the_default_aggregate_by_under_ten_percent(attack):
    """Honest sites agree to within 10% (heterogeneity 0.1); the table for more disagreement is in bench_poisoning."""
    method = FederationConfig().aggregator
    proto_shift, weight_shift = shifts(attack, method, Scenario(heterogeneity=0.1))
    assert proto_shift < 0.10 and weight_shift < 0.10
    mean_p, mean_w = shifts(attack, "mean", Scenario(heterogeneity=0.1))
    assert max(mean_p, mean_w) > 0.25  # the count-weighted mean is captured: the bound above means something


def test_centered_clip_is_the_mean_of_agreeing_sites_and_bounds_an_outlier():
    from fedxalign.server.aggregation import centered_clip_rows

    rng = np.random.default_rng(0)
    honest = rng.normal(0, 1, (6, 8))
    assert np.allclose(centered_clip_rows(honest[:2]), honest[:2].mean(0))  # two sites: nothing to clip against
    far = np.vstack([honest, [np.full(8, 1e6)]])
    centre = np.median(far, axis=0)
    radius = np.median(np.linalg.norm(far - centre, axis=1))
    assert np.linalg.norm(centered_clip_rows(far) - centered_clip_rows(honest)) < 2 * radius  # not 1e6 / 7
