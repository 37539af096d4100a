"""Empirical audit of one prototype release: a worst-case canary, many draws, a threshold test, a lower bound on epsilon.

Neighbouring inputs D and D + canary (one window of norm `clip`, far from every other, in one
class). The release is run many times on each; the test statistic is the projection of
(sum / clip, count) of the canary's class on the direction the canary moves it (the likelihood
ratio of two Gaussians with equal covariance is monotone in it). A threshold chosen on one half
of the draws is scored on the other; with Clopper-Pearson upper bounds on its false positive
and false negative rates, epsilon >= log((1 - delta - FNR) / FPR) holds with the stated
confidence (Jagielski et al. 2020; Nasr et al. 2021). It must stay below the claimed epsilon;
it is a lower bound, so staying below proves no upper bound, but a broken mechanism (reused
or too little noise) shows up as a bound above the claim.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from opacus.accountants.analysis import rdp as rdp_analysis
from scipy.stats import beta

from fedxalign.shared.privacy.config import PrivacyConfig
from fedxalign.shared.privacy.ledger import ALL_ORDERS
from fedxalign.shared.privacy.release import effective_release_sigma, release_prototypes


class _AuditLedger:
    """Stands in for the site's ledger during an audit: lets every release draw noise, keeps nothing on disk."""

    def __init__(self) -> None:
        self.cfg = PrivacyConfig(epsilon=1e6)
        self.releases = 0

    def spend(self, *args, **kwargs) -> None:
        self.releases += 1


@dataclass(frozen=True)
class AuditResult:
    epsilon_lower: float
    epsilon_claimed: float
    fpr_upper: float
    fnr_upper: float
    draws: int


def claimed_epsilon(noise_multiplier: float, delta: float) -> float:
    """What the ledger claims for one release: RDP of the Gaussian mechanism with sigma / sqrt(2), q = 1."""
    rdp = rdp_analysis.compute_rdp(q=1.0, noise_multiplier=effective_release_sigma(noise_multiplier), steps=1, orders=list(ALL_ORDERS))
    return float(rdp_analysis.get_privacy_spent(orders=list(ALL_ORDERS), rdp=rdp, delta=delta)[0])


def _cp_upper(k: int, n: int, alpha: float) -> float:
    return 1.0 if k >= n else float(beta.ppf(1 - alpha, k + 1, n - k))


def audit_release(draws: int, noise_multiplier: float, claimed_noise_multiplier: float | None = None, clip: float = 1.0,
                  delta: float = 1e-5, alpha: float = 0.05, n_classes: int = 3, dim: int = 8, seed: int = 0) -> AuditResult:
    """Audit `draws` releases of each neighbour; `claimed_noise_multiplier` differs only to show the audit catching too little noise."""
    claimed_noise_multiplier = claimed_noise_multiplier or noise_multiplier
    rng = np.random.default_rng(seed)  # the data only; every release draws its own noise from the OS-seeded generator
    z = rng.standard_normal((300, dim))
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    y = np.arange(300) % n_classes
    canary = np.zeros((1, dim))
    canary[0, 0] = clip
    direction = np.concatenate([canary[0] / clip, [1.0]]) / math.sqrt(2.0)
    ledger = _AuditLedger()

    def statistic(with_canary: bool) -> float:
        zz, yy = (np.vstack([z, canary]), np.append(y, 0)) if with_canary else (z, y)
        rel = release_prototypes(zz, yy, n_classes, clip, noise_multiplier, 0.0, None, ledger)  # type: ignore[arg-type]
        sums = rel.prototypes[0].astype(np.float64) * rel.counts[0]
        return float(np.concatenate([sums / clip, [rel.counts[0]]]) @ direction)

    out = np.array([statistic(False) for _ in range(draws)])
    inn = np.array([statistic(True) for _ in range(draws)])
    half = draws // 2
    candidates = np.quantile(np.concatenate([out[:half], inn[:half]]), np.linspace(0.01, 0.99, 99))
    best = (-math.inf, 1.0, 1.0)
    for t in candidates:  # pick the threshold on the first half ...
        fpr, fnr = np.mean(out[:half] > t), np.mean(inn[:half] <= t)
        score = math.log(max(1 - delta - fnr, 1e-12) / max(fpr, 1 / half))
        if score > best[0]:
            best = (score, t, 0.0)
    t = best[1]
    n = draws - half  # ... and score it on the second
    fp, fn = int(np.sum(out[half:] > t)), int(np.sum(inn[half:] <= t))
    fpr_u, fnr_u = _cp_upper(fp, n, alpha / 2), _cp_upper(fn, n, alpha / 2)
    lower = max(math.log(max(1 - delta - fnr_u, 1e-300) / fpr_u), math.log(max(1 - delta - fpr_u, 1e-300) / fnr_u), 0.0)
    return AuditResult(lower, claimed_epsilon(claimed_noise_multiplier, delta), fpr_u, fnr_u, draws)
