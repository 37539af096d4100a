"""Robust per-modality aggregation of the sites' privatised prototypes, and FedAvg of weights.

Each aggregator takes the stacked prototypes (sites, C, d) and noisy counts (sites, C) of ONE
modality and returns (C, d) prototypes, (C,) total counts. A site that did not release a
class (count 0) does not take part in that class. Registry by name: `mean` (count-weighted),
`trimmed_mean` (drops the `trim` fraction of sites at each end, per coordinate), `median`
(coordinate-wise).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from shared.errors import check_option


@dataclass(frozen=True)
class ModalityPrototypes:
    """Aggregated prototypes of one modality; `counts` are summed noisy counts, 0 where no site released the class."""

    prototypes: np.ndarray
    counts: np.ndarray
    n_sites: int

    @property
    def present(self) -> np.ndarray:
        return self.counts > 0


def _weighted_mean(p: np.ndarray, w: np.ndarray, trim: float) -> np.ndarray:
    total = w.sum(0)
    return np.einsum("sc,scd->cd", w, p) / np.maximum(total, 1e-12)[:, None]


def _per_class(p: np.ndarray, w: np.ndarray, reducer: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    out = np.zeros(p.shape[1:])
    for c in range(p.shape[1]):
        rows = p[w[:, c] > 0, c]
        if len(rows):
            out[c] = reducer(rows)
    return out


def _trimmed_mean(p: np.ndarray, w: np.ndarray, trim: float) -> np.ndarray:
    def reduce(rows: np.ndarray) -> np.ndarray:
        k = int(np.floor(trim * len(rows)))
        s = np.sort(rows, axis=0)
        return s[k : len(rows) - k].mean(0) if len(rows) - 2 * k > 0 else np.median(rows, axis=0)
    return _per_class(p, w, reduce)


def _median(p: np.ndarray, w: np.ndarray, trim: float) -> np.ndarray:
    return _per_class(p, w, lambda rows: np.median(rows, axis=0))


AGGREGATORS: dict[str, Callable[[np.ndarray, np.ndarray, float], np.ndarray]] = {
    "mean": _weighted_mean, "trimmed_mean": _trimmed_mean, "median": _median,
}


def aggregate_prototypes(prototypes: list[np.ndarray], counts: list[np.ndarray], method: str = "mean", trim: float = 0.2) -> ModalityPrototypes:
    check_option("aggregator", method, tuple(AGGREGATORS))
    p = np.stack([np.asarray(x, np.float64) for x in prototypes])
    w = np.clip(np.stack([np.asarray(c, np.float64) for c in counts]), 0, None)
    return ModalityPrototypes(prototypes=AGGREGATORS[method](p, w, trim), counts=w.sum(0), n_sites=len(prototypes))


def fedavg(weights: list[dict[str, np.ndarray]], sizes: list[float]) -> dict[str, np.ndarray]:
    """FedAvg (McMahan et al. 2017) of same-modality encoders, weighted by each site's released count total."""
    total = float(sum(sizes))
    share = [s / total if total > 0 else 1 / len(sizes) for s in sizes]
    return {k: sum(a * np.asarray(w[k], np.float64) for a, w in zip(share, weights)).astype(np.float32) for k in weights[0]}
