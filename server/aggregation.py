"""Robust per-modality aggregation of the sites' privatised prototypes and of their encoder weights.

Counts are self-reported, so they never buy influence beyond `count_cap` per class. Each
aggregator takes the stacked prototypes (sites, C, d) and capped counts (sites, C) of ONE
modality and returns (C, d) prototypes. A site that did not release a class (count 0) does
not take part in that class. Registry by name: `centered_clip` (the default: the mean after
clipping each site's distance from the coordinate-wise median to the median distance),
`mean` (count-weighted), `trimmed_mean` (coordinate-wise; drops the `trim` fraction of sites
at each end, at least one each end once three sites take part), `median` (coordinate-wise).
Weights use the same aggregator: `mean` is FedAvg weighted by capped counts, `centered_clip`
clips whole-model distances, the others are coordinate-wise; all but `mean` ignore counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from fedxalign.shared.errors import check_option

DEFAULT_COUNT_CAP = 10_000.0


@dataclass(frozen=True)
class ModalityPrototypes:
    """Aggregated prototypes of one modality; `counts` are summed capped noisy counts, 0 where no site released the class."""

    prototypes: np.ndarray
    counts: np.ndarray
    n_sites: int

    @property
    def present(self) -> np.ndarray:
        return self.counts > 0


def n_trimmed(n: int, trim: float) -> int:
    """Rows dropped at each end: the `trim` fraction, at least one once three rows take part (else one outlier rules)."""
    if n < 3:
        return 0
    return min(max(1, math.floor(trim * n)), (n - 1) // 2)


def trimmed_mean_rows(rows: np.ndarray, trim: float) -> np.ndarray:
    """Coordinate-wise trimmed mean over axis 0."""
    k = n_trimmed(len(rows), trim)
    s = np.sort(rows, axis=0)
    return s[k: len(rows) - k].mean(0)


def centered_clip_rows(rows: np.ndarray) -> np.ndarray:
    """Mean of the rows after clipping each one's distance from the coordinate-wise median to the median distance.

    Centred clipping (Karimireddy, He & Jaggi 2021): honest rows, at similar distances, are
    barely clipped, so the result stays close to their mean (all rows count); a row far out
    moves the result by at most (median distance) / n, whatever it holds.
    """
    if len(rows) < 3:
        return rows.mean(0)
    centre = np.median(rows, axis=0)
    dev = rows - centre
    norms = np.linalg.norm(dev.reshape(len(rows), -1), axis=1)
    tau = np.median(norms)
    scale = np.minimum(1.0, tau / np.maximum(norms, 1e-12))
    return centre + (dev * scale.reshape(-1, *[1] * (rows.ndim - 1))).mean(0)


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
    return _per_class(p, w, lambda rows: trimmed_mean_rows(rows, trim))


def _median(p: np.ndarray, w: np.ndarray, trim: float) -> np.ndarray:
    return _per_class(p, w, lambda rows: np.median(rows, axis=0))


def _centered_clip(p: np.ndarray, w: np.ndarray, trim: float) -> np.ndarray:
    return _per_class(p, w, centered_clip_rows)


AGGREGATORS: dict[str, Callable[[np.ndarray, np.ndarray, float], np.ndarray]] = {
    "mean": _weighted_mean, "trimmed_mean": _trimmed_mean, "median": _median, "centered_clip": _centered_clip,
}


def cap_counts(counts: np.ndarray, cap: float) -> np.ndarray:
    return np.clip(np.nan_to_num(np.asarray(counts, np.float64), nan=0.0, posinf=cap, neginf=0.0), 0.0, cap)


def aggregate_prototypes(prototypes: list[np.ndarray], counts: list[np.ndarray], method: str = "trimmed_mean", trim: float = 0.2,
                         count_cap: float = DEFAULT_COUNT_CAP) -> ModalityPrototypes:
    check_option("aggregator", method, tuple(AGGREGATORS))
    p = np.stack([np.asarray(x, np.float64) for x in prototypes])
    w = np.stack([cap_counts(c, count_cap) for c in counts])
    return ModalityPrototypes(prototypes=AGGREGATORS[method](p, w, trim), counts=w.sum(0), n_sites=len(prototypes))


def aggregate_weights(weights: list[dict[str, np.ndarray]], sizes: list[float], method: str = "trimmed_mean",
                      trim: float = 0.2) -> dict[str, np.ndarray]:
    """Same-modality encoders: FedAvg (McMahan et al. 2017) weighted by `sizes` (sums of capped counts) for `mean`,
    else coordinate-wise robust and blind to sizes."""
    check_option("aggregator", method, tuple(AGGREGATORS))
    if method == "mean":
        capped = [max(float(s), 0.0) if math.isfinite(s) else 0.0 for s in sizes]
        total = sum(capped)
        share = [s / total if total > 0 else 1 / len(capped) for s in capped]
        return {k: sum(a * np.asarray(w[k], np.float64) for a, w in zip(share, weights)).astype(np.float32) for k in weights[0]}
    if method == "centered_clip":  # on the whole model as one vector, so the clipping radius is one model distance
        keys = list(weights[0])
        flat = np.stack([np.concatenate([np.asarray(w[k], np.float64).ravel() for k in keys]) for w in weights])
        out, start = centered_clip_rows(flat), 0
        result = {}
        for k in keys:
            size = int(np.asarray(weights[0][k]).size)
            result[k] = out[start:start + size].reshape(np.shape(weights[0][k])).astype(np.float32)
            start += size
        return result
    reduce = (lambda rows: np.median(rows, axis=0)) if method == "median" else (lambda rows: trimmed_mean_rows(rows, trim))
    return {k: reduce(np.stack([np.asarray(w[k], np.float64) for w in weights])).astype(np.float32) for k in weights[0]}
