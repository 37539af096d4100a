"""Gaussian release of per-class prototypes: clipped sums and counts plus calibrated noise.

Adding or removing one window changes one class's (sum / clip) by at most 1 in L2 and its
count by 1, so the released vector (sum / clip, count) has L2 sensitivity sqrt(2); with noise
of std sigma on every coordinate this is a Gaussian mechanism with noise multiplier
sigma / sqrt(2), which is what the ledger composes (Dwork & Roth 2014, Thm A.1; RDP of the
Gaussian mechanism, Mironov 2017).

With patients as the privacy unit, each patient's windows are weighted by 1 / (its window
count): its clipped sums then add up to at most `clip` in L2 and its counts to at most 1, so
adding or removing one patient again moves (sum / clip, count) by at most sqrt(2), and the
same noise gives the same guarantee per patient. Released counts are then patient-weighted.
The noise comes from a generator seeded from the OS (`shared.privacy.randomness`) unless a
caller passes one (tests only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fedxalign.shared.privacy.ledger import PrivacyLedger
from fedxalign.shared.privacy.randomness import secure_numpy_rng

RELEASE_SENSITIVITY = math.sqrt(2.0)


@dataclass(frozen=True)
class PrototypeRelease:
    """What leaves the site: `prototypes` (C, d) noisy class means, zero where suppressed; `counts` (C,) noisy counts, zero where suppressed."""

    prototypes: np.ndarray
    counts: np.ndarray

    @property
    def present(self) -> np.ndarray:
        return self.counts > 0


def effective_release_sigma(noise_multiplier: float, parts: int = 1) -> float:
    """Noise over sensitivity of one release of `parts` clipped sums plus the counts: sqrt(parts + 1)."""
    return noise_multiplier / math.sqrt(parts + 1.0)


def add_release_noise(sums: np.ndarray, counts: np.ndarray, clip: float, noise_multiplier: float,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian noise of std `noise_multiplier * clip` on every sum coordinate and `noise_multiplier` on every count."""
    return sums + rng.normal(0.0, noise_multiplier * clip, sums.shape), counts + rng.normal(0.0, noise_multiplier, counts.shape)


def release_prototypes(z: np.ndarray, y: np.ndarray, n_classes: int, clip: float, noise_multiplier: float,
                       min_count: float, rng: np.random.Generator | None = None, ledger: PrivacyLedger | None = None,
                       subjects: np.ndarray | None = None, round_no: int = 0) -> PrototypeRelease:
    """Privatised per-class means of embeddings `z` (n, d) with labels `y` (n,).

    `subjects` (n,) makes each subject, not each window, one unit (see the module docstring).
    With a ledger whose DP is on, the release is recorded (and refused if over budget) before
    any noise is drawn; with DP off (`ledger` None or disabled) the exact means and counts go out.
    """
    protos, counts = release_joint([z], y, n_classes, clip, noise_multiplier, min_count, rng, ledger, subjects, round_no)
    return PrototypeRelease(prototypes=protos[0], counts=counts)


def release_joint(zs: list[np.ndarray], y: np.ndarray, n_classes: int, clip: float, noise_multiplier: float,
                  min_count: float, rng: np.random.Generator | None = None, ledger: PrivacyLedger | None = None,
                  subjects: np.ndarray | None = None, round_no: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """One Gaussian release of several embeddings of the same units (a paired site's EEG and ECG of each
    pair) and their one shared count: per class (sum_1 / clip, ..., sum_k / clip, count).

    One unit moves each clipped sum by at most 1 and the count by 1: sensitivity sqrt(k + 1),
    recorded once in the ledger (cheaper than k releases of sensitivity sqrt(2) each).
    """
    weight = np.ones(len(y))
    if subjects is not None:
        _, inverse, per_subject = np.unique(np.asarray(subjects).astype(str), return_inverse=True, return_counts=True)
        weight = 1.0 / per_subject[inverse]
    counts = np.bincount(y, weights=weight, minlength=n_classes).astype(np.float64)
    sums = []
    for z in zs:
        z = np.asarray(z, dtype=np.float64)
        z = z * np.minimum(1.0, clip / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12))
        part = np.zeros((n_classes, z.shape[1]))
        np.add.at(part, y, z * weight[:, None])
        sums.append(part)
    if ledger is not None and ledger.cfg.enabled:
        ledger.spend("prototype_release", effective_release_sigma(noise_multiplier, len(zs)), 1.0, 1, round_no=round_no)
        noisy, counts = add_release_noise(np.concatenate(sums, axis=1), counts, clip, noise_multiplier,
                                          rng if rng is not None else secure_numpy_rng())
        sums = np.split(noisy, len(sums), axis=1)
    keep = counts >= max(min_count, 1e-9)
    protos = [np.where(keep[:, None], s / np.maximum(counts, 1e-12)[:, None], 0.0).astype(np.float32) for s in sums]
    return protos, np.where(keep, counts, 0.0).astype(np.float32)
