"""One poisoned site among honest ones: how far each aggregator lets it move the prototypes and the averaged weights.

Shared by the test (default aggregator under 10%) and `benchmarks/bench_poisoning.py` (the table).
Honest sites differ by `heterogeneity` h: each site's prototype deviates from the class centre
by about h times the inter-class distance, and its encoder update from the common one by about
h times the update's norm. The poisoned site sends one of ATTACKS. Shifts are
relative: prototypes against the clean aggregate's mean inter-class distance, weights against
the clean aggregate's update norm; "clean" is the same aggregator over all sites honest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedxalign.server.aggregation import DEFAULT_COUNT_CAP, aggregate_prototypes, aggregate_weights, cap_counts

ATTACKS = ("prototypes_x100", "negated_means", "counts_1e9", "weights_x100")


@dataclass(frozen=True)
class Scenario:
    n_sites: int = 5
    n_classes: int = 5
    dim: int = 32
    n_params: int = 2000
    heterogeneity: float = 0.1
    count: float = 100.0
    seed: int = 0


def honest_sites(sc: Scenario) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(sc.seed)
    centres = rng.standard_normal((sc.n_classes, sc.dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    w0 = rng.standard_normal(sc.n_params)
    update = rng.standard_normal(sc.n_params)
    update /= np.linalg.norm(update)
    spread = sc.heterogeneity * np.sqrt(2.0) / np.sqrt(sc.dim)  # unit centres lie about sqrt(2) apart
    protos = [centres + spread * rng.standard_normal(centres.shape) for _ in range(sc.n_sites)]
    counts = [np.full(sc.n_classes, sc.count) for _ in range(sc.n_sites)]
    weights = [w0 + update + sc.heterogeneity * rng.standard_normal(sc.n_params) / np.sqrt(sc.n_params) for _ in range(sc.n_sites)]
    return protos, counts, weights, w0


def poison(attack: str, proto: np.ndarray, count: np.ndarray, weight: np.ndarray, w0: np.ndarray):
    if attack == "prototypes_x100":
        return proto * 100, count, weight
    if attack == "negated_means":
        return -proto, count, w0 - (weight - w0)
    if attack == "counts_1e9":  # huge counts to rule a count-weighted mean, with negated content
        return -proto, np.full_like(count, 1e9), w0 - (weight - w0)
    if attack == "weights_x100":
        return proto, count, weight * 100
    raise ValueError(attack)


def _aggregate(protos, counts, weights, method: str, trim: float):
    p = aggregate_prototypes(protos, counts, method, trim, DEFAULT_COUNT_CAP).prototypes
    sizes = [float(cap_counts(c, DEFAULT_COUNT_CAP).sum()) for c in counts]
    w = aggregate_weights([{"w": x} for x in weights], sizes, method, trim)["w"].astype(np.float64)
    return p, w


def shifts(attack: str, method: str, sc: Scenario = Scenario(), trim: float = 0.2) -> tuple[float, float]:
    """(prototype shift / clean inter-class distance, weight shift / clean update norm) with site 0 poisoned."""
    protos, counts, weights, w0 = honest_sites(sc)
    clean_p, clean_w = _aggregate(protos, counts, weights, method, trim)
    bad = poison(attack, protos[0], counts[0], weights[0], w0)
    pois_p, pois_w = _aggregate([bad[0], *protos[1:]], [bad[1], *counts[1:]], [bad[2], *weights[1:]], method, trim)
    dist = np.linalg.norm(clean_p[:, None] - clean_p[None], axis=-1)
    inter = dist[~np.eye(len(clean_p), dtype=bool)].mean()
    p_shift = float(np.linalg.norm(pois_p - clean_p, axis=1).max() / inter)
    w_shift = float(np.linalg.norm(pois_w - clean_w) / np.linalg.norm(clean_w - w0))
    return p_shift, w_shift
