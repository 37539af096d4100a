"""A site's privacy ledger on its own disk: every DP-SGD step and every release composed in one accountant.

The ledger is the site's, not the server's: it survives restarts (each Flower message may run
in a fresh process), it is written *before* the mechanism it records runs (a crash can only
over-count), and it refuses anything that would take epsilon past the site's budget.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np
from opacus.accountants import PRVAccountant, RDPAccountant
from opacus.accountants.analysis import rdp as rdp_analysis

from shared.errors import ConfigError, FedXAlignError
from shared.privacy.config import PrivacyConfig

log = logging.getLogger(__name__)

Entry = tuple[float, float, int]  # (noise multiplier, sample rate, steps), Opacus accountant history format
ACCOUNTANT_CLASSES = {"rdp": RDPAccountant, "prv": PRVAccountant}


class BudgetExceeded(FedXAlignError):
    """The next step or release would take the site's epsilon past its budget."""


def _merge(entries: Iterable[Entry]) -> list[Entry]:
    merged: dict[tuple[float, float], int] = {}
    for sigma, q, steps in entries:
        merged[(float(sigma), float(q))] = merged.get((float(sigma), float(q)), 0) + int(steps)
    return [(s, q, n) for (s, q), n in merged.items() if n > 0]


class PrivacyLedger:
    """Persistent composition of Gaussian mechanisms under one (epsilon, delta) budget."""

    VERSION = 1

    def __init__(self, path: str | Path, cfg: PrivacyConfig) -> None:
        self.path = Path(path)
        self.cfg = cfg
        self.entries: list[Entry] = []
        self.counts: dict[str, int] = {}
        self.noise_multiplier: float | None = None
        self._unit_rdp: dict[tuple[float, float], np.ndarray] = {}
        if self.path.is_file():
            self._load()

    def _load(self) -> None:
        try:
            state = json.loads(self.path.read_text())
            self.entries = [(float(s), float(q), int(n)) for s, q, n in state["entries"]]
            self.counts = {k: int(v) for k, v in state.get("counts", {}).items()}
            self.noise_multiplier = state.get("noise_multiplier")
            stored = state.get("accountant", self.cfg.accountant)
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ConfigError(f"{self.path}: privacy ledger is unreadable ({err}); refusing to guess what was spent") from err
        if stored != self.cfg.accountant:
            raise ConfigError(f"{self.path}: ledger was kept with the {stored!r} accountant, settings ask for {self.cfg.accountant!r}")

    def save(self, with_epsilon: bool = True) -> None:
        """Atomic write (temp file + rename) so a crash never leaves a half-written ledger."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "version": self.VERSION, "accountant": self.cfg.accountant, "epsilon_budget": self.cfg.epsilon,
            "delta": self.cfg.delta, "entries": [list(e) for e in self.entries], "counts": self.counts,
            "noise_multiplier": self.noise_multiplier,
        }
        if with_epsilon:
            state["epsilon_spent"] = self.epsilon()
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".ledger-", suffix=".json")
        with os.fdopen(fd, "w") as fh:
            json.dump(state, fh, indent=1)
        os.replace(tmp, self.path)

    def epsilon(self, extra: Iterable[Entry] = ()) -> float:
        """Epsilon at the configured delta for what is recorded plus `extra`; inf when DP is off."""
        if not self.cfg.enabled:
            return math.inf
        history = _merge([*self.entries, *extra])
        if not history:
            return 0.0
        if self.cfg.accountant == "rdp":
            # RDP composes additively and is linear in the step count, so one cached vector per
            # (sigma, q) gives exactly Opacus' RDPAccountant.get_epsilon at a fraction of the cost.
            total = sum(steps * self._rdp_one_step(sigma, q) for sigma, q, steps in history)
            eps, _ = rdp_analysis.get_privacy_spent(orders=RDPAccountant.DEFAULT_ALPHAS, rdp=total, delta=self.cfg.delta)
            return float(eps)
        acc = ACCOUNTANT_CLASSES[self.cfg.accountant]()
        acc.history = history
        return float(acc.get_epsilon(delta=self.cfg.delta))

    def _rdp_one_step(self, sigma: float, q: float) -> np.ndarray:
        key = (sigma, q)
        if key not in self._unit_rdp:
            self._unit_rdp[key] = np.asarray(rdp_analysis.compute_rdp(q=q, noise_multiplier=sigma, steps=1,
                                                                      orders=RDPAccountant.DEFAULT_ALPHAS))
        return self._unit_rdp[key]

    def can_afford(self, extra: Iterable[Entry]) -> bool:
        return self.epsilon(extra) <= self.cfg.epsilon

    def spend(self, kind: str, sigma: float, sample_rate: float, steps: int = 1) -> None:
        """Record a mechanism before it runs; raises BudgetExceeded (and records nothing) if it does not fit."""
        if not self.cfg.enabled:
            return
        entry = (float(sigma), float(sample_rate), int(steps))
        if not self.can_afford([entry]):
            raise BudgetExceeded(
                f"{kind} refused: it would take epsilon from {self.epsilon():.3f} to {self.epsilon([entry]):.3f}, "
                f"over this site's budget of {self.cfg.epsilon:g} (delta {self.cfg.delta:g})"
            )
        self.record(kind, sigma, sample_rate, steps, with_epsilon=True)

    def record(self, kind: str, sigma: float, sample_rate: float, steps: int = 1, with_epsilon: bool = False) -> None:
        """Record without the budget check, for steps already cleared by `affordable_steps`; saved at once."""
        if not self.cfg.enabled:
            return
        self.entries = _merge([*self.entries, (float(sigma), float(sample_rate), int(steps))])
        self.counts[kind] = self.counts.get(kind, 0) + int(steps)
        self.save(with_epsilon=with_epsilon)

    def affordable_steps(self, sigma: float, sample_rate: float, reserve: Iterable[Entry] = (), limit: int = 10**6) -> int:
        """Largest k such that k more steps of (sigma, q) plus `reserve` still fit the budget."""
        if not self.cfg.enabled:
            return limit
        reserve = list(reserve)
        fits = lambda k: self.can_afford([(sigma, sample_rate, k), *reserve])  # noqa: E731
        if not fits(0):
            return 0
        hi = 1
        while hi < limit and fits(hi):
            hi *= 2
        if hi >= limit and fits(limit):
            return limit
        lo = hi // 2
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid)
        return lo


def calibrate_noise(ledger: PrivacyLedger, sample_rate: float, steps_per_round: int, rounds: int,
                    release_sigma: float, lo: float = 0.3, hi: float = 200.0) -> float:
    """Smallest DP-SGD noise multiplier that fits `rounds` x (local steps + one release) in the remaining budget.

    `release_sigma` is the effective noise multiplier of one prototype release (sensitivity 1).
    """
    def fits(sigma: float) -> bool:
        return ledger.can_afford([(sigma, sample_rate, rounds * steps_per_round), (release_sigma, 1.0, rounds)])

    if not fits(hi):
        raise ConfigError(
            f"budget epsilon={ledger.cfg.epsilon:g} cannot cover {rounds} round(s) of {steps_per_round} steps at "
            f"sample rate {sample_rate:.3g} plus {rounds} prototype release(s) at sigma {release_sigma:g}: "
            "raise the budget, lower rounds/epochs, or raise proto_noise_multiplier"
        )
    for _ in range(40):
        mid = math.sqrt(lo * hi)
        lo, hi = (lo, mid) if fits(mid) else (mid, hi)
        if hi / lo < 1.005:
            break
    return hi
