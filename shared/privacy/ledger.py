"""A site's privacy ledger on its own disk: every DP-SGD step and every release composed in one accountant.

The ledger is the site's, not the server's: it survives restarts (each Flower message may run
in a fresh process), it is written *before* the mechanism it records runs (a crash can only
over-count), and it refuses anything that would take epsilon past the site's budget.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import warnings
from pathlib import Path
from typing import Iterable

import numpy as np
from opacus.accountants import PRVAccountant, RDPAccountant
from opacus.accountants.analysis import rdp as rdp_analysis

from fedxalign.shared.atomic_files import write_text
from fedxalign.shared.errors import ConfigError, FedXAlignError
from fedxalign.shared.privacy.config import PrivacyConfig

log = logging.getLogger(__name__)

Entry = tuple[float, float, int]  # (noise multiplier, sample rate, steps), Opacus accountant history format
ACCOUNTANT_CLASSES = {"rdp": RDPAccountant, "prv": PRVAccountant}
# What the ledger's epsilon is minimised over: Opacus' default orders and larger integer ones. Early in
# a run at a high release noise (one release at sigma 17, epsilon 1's setting) the best order lies past
# Opacus' largest, 63: its bound is then looser than need be and it warns, once per site and call.
# Every order gives a valid bound, so more orders can only tighten it; where the best order is among
# the defaults (every full run measured here) the epsilon is Opacus' own.
LARGE_ORDERS = (64, 80, 96, 128, 192, 256, 384, 512)
ALL_ORDERS = tuple(RDPAccountant.DEFAULT_ALPHAS) + LARGE_ORDERS
INTEGER_ORDERS = tuple(a for a in ALL_ORDERS if float(a).is_integer())  # calibration's fast, conservative first guess
FRACTIONAL_ORDERS = tuple(a for a in ALL_ORDERS if not float(a).is_integer())


@functools.lru_cache(maxsize=1 << 16)
def unit_rdp(sigma: float, q: float, order: float) -> float:
    """RDP at one order of one step of the subsampled Gaussian mechanism (Opacus' analysis).

    Memoised because a site's ledger is opened afresh for every round (a Flower message may run
    in a new process; the references reopen it too), and the same (sigma, q) at Opacus'
    fractional orders cost 0.1-0.4 s each time: measured, about a tenth of a DP baseline's time.
    A memo of a pure function: no answer depends on what was asked before.
    """
    return float(rdp_analysis.compute_rdp(q=q, noise_multiplier=sigma, steps=1, orders=[order])[0])


class BudgetExceeded(FedXAlignError):
    """The next step or release would take the site's epsilon past its budget."""


def _merge(entries: Iterable[Entry]) -> list[Entry]:
    merged: dict[tuple[float, float], int] = {}
    for sigma, q, steps in entries:
        merged[(float(sigma), float(q))] = merged.get((float(sigma), float(q)), 0) + int(steps)
    return [(s, q, n) for (s, q), n in merged.items() if n > 0]


class LedgerIntegrityError(ConfigError):
    """The ledger is missing, unreadable or edited while the state folder shows earlier work: the site refuses to train."""


def _digest(prev: str, payload: dict) -> str:
    return hashlib.sha256((prev + json.dumps(payload, sort_keys=True, separators=(",", ":"))).encode()).hexdigest()


class PrivacyLedger:
    """Persistent composition of Gaussian mechanisms under one (epsilon, delta) budget.

    The file holds a header (accountant, delta, unit: fixed when the ledger is created) and
    an append-only list of events, each carrying the SHA-256 of the header and every event
    before it. A second file, `<name>.head`, holds the number of events and the last hash,
    so an edited entry, a truncated list or a rolled-back copy is refused by name. A missing
    or empty ledger is accepted only when nothing in `earlier_work` exists (a fresh site).
    This makes mistakes and edits evident; it does not stop a site's own administrator who
    rewrites both files on purpose.
    """

    VERSION = 2

    def __init__(self, path: str | Path, cfg: PrivacyConfig, earlier_work: Iterable[str | Path] = ()) -> None:
        self.path = Path(path)
        self.head_path = self.path.with_name(self.path.name + ".head")
        self.cfg = cfg
        self.events: list[dict] = []
        self.entries: list[Entry] = []
        self.counts: dict[str, int] = {}
        self._header = {"version": self.VERSION, "accountant": cfg.accountant, "delta": cfg.delta, "unit": cfg.unit}
        if self.path.is_file() and self.path.stat().st_size > 0:
            self._load()
        else:
            self._refuse_if_earlier_work([self.path, self.head_path, *map(Path, earlier_work)])

    def _refuse_if_earlier_work(self, evidence: list[Path]) -> None:
        """A ledger path that is an empty file or a dangling link is itself evidence of earlier work."""
        state = "is a dangling link" if self.path.is_symlink() and not self.path.exists() else (
            "is empty" if self.path.exists() else "does not exist")
        found = [str(p) for p in evidence if p.exists() or p.is_symlink()]
        if found:
            raise LedgerIntegrityError(
                f"{self.path}: privacy ledger {state}, but this state folder shows earlier work ({', '.join(found)}); "
                "refusing to start the budget again at zero. Restore the ledger from backup.")

    def _load(self) -> None:
        try:
            state = json.loads(self.path.read_text())
            header, events = state["header"], state["events"]
            prev = _digest("", header)
            for e in events:
                body = {k: v for k, v in e.items() if k != "hash"}
                prev = _digest(prev, body)
                if e["hash"] != prev:
                    raise LedgerIntegrityError(f"{self.path}: privacy ledger entry {len(self.events) + 1} was edited "
                                               "(its hash does not match); refusing to guess what was spent")
                self.events.append(e)
        except LedgerIntegrityError:
            raise
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise LedgerIntegrityError(f"{self.path}: privacy ledger is unreadable ({err}); refusing to guess what was spent") from err
        self._check_head()
        for key in ("accountant", "delta", "unit"):
            if header.get(key) != self._header[key]:
                raise ConfigError(f"{self.path}: the ledger was created with {key}={header.get(key)!r}; the settings ask "
                                  f"for {self._header[key]!r}, and {key} is fixed for a ledger's life")
        self._header = header
        self._rebuild()

    def _check_head(self) -> None:
        try:
            head = json.loads(self.head_path.read_text())
            n, h = int(head["events"]), str(head["hash"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise LedgerIntegrityError(f"{self.head_path}: the ledger's head is missing or unreadable ({err}); "
                                       "cannot tell whether entries were removed") from err
        # the head is written right after the ledger: one event ahead of it means a crash in between
        if not (len(self.events) - 1 <= n <= len(self.events) and (n == 0 or self.events[n - 1]["hash"] == h)):
            raise LedgerIntegrityError(f"{self.path}: the ledger holds {len(self.events)} entries but its head records {n}: "
                                       "entries were removed or an older copy was restored")

    def _rebuild(self) -> None:
        spent = [e for e in self.events if e["steps"] > 0]
        self.entries = _merge((e["sigma"], e["q"], e["steps"]) for e in spent)
        self.counts = {}
        for e in spent:
            self.counts[e["kind"]] = self.counts.get(e["kind"], 0) + int(e["steps"])

    @property
    def noise_multiplier(self) -> float | None:
        """The DP-SGD noise multiplier calibrated once for this ledger's life (None before the first round)."""
        calib = [e["sigma"] for e in self.events if e["kind"] == "calibration"]
        return float(calib[-1]) if calib else None

    def set_noise_multiplier(self, sigma: float) -> None:
        self._append({"kind": "calibration", "sigma": float(sigma), "q": 0.0, "steps": 0, "round": 0})

    def rounds(self, kind: str = "prototype_release") -> set[int]:
        """Rounds in which `kind` was recorded."""
        return {int(e["round"]) for e in self.events if e["kind"] == kind}

    def _append(self, body: dict) -> None:
        prev = self.events[-1]["hash"] if self.events else _digest("", self._header)
        self.events.append(body | {"hash": _digest(prev, body)})
        self._rebuild()
        self.save()

    def save(self) -> None:
        """Atomic writes (temp file + rename) of the ledger, then of its head."""
        state = {"header": self._header, "events": self.events, "epsilon_budget": self.cfg.epsilon, "counts": self.counts,
                 "noise_multiplier": self.noise_multiplier, "epsilon_spent": self.epsilon()}
        write_text(self.path, json.dumps(state, separators=(",", ":")), durable=True)
        last = self.events[-1]["hash"] if self.events else ""
        write_text(self.head_path, json.dumps({"events": len(self.events), "hash": last}), durable=True)

    def epsilon(self, extra: Iterable[Entry] = (), orders: tuple[float, ...] | None = None) -> float:
        """Epsilon at the configured delta for what is recorded plus `extra`; inf when DP is off.

        `orders` (RDP only) restricts the orders the bound is minimised over: fewer orders give a
        larger epsilon, never a smaller one, so it may only serve a conservative first guess.
        """
        return self._spent(extra, orders)[0]

    def _spent(self, extra: Iterable[Entry], orders: tuple[float, ...] | None) -> tuple[float, float]:
        """(epsilon, the RDP order that gives it; nan unless the RDP accountant composed something)."""
        if not self.cfg.enabled:
            return math.inf, math.nan
        history = _merge([*self.entries, *extra])
        if not history:
            return 0.0, math.nan
        if self.cfg.accountant == "rdp":
            # RDP composes additively and is linear in the step count, so one step's RDP per (sigma, q, order),
            # memoised (`unit_rdp`), gives Opacus' RDPAccountant.get_epsilon (on ALL_ORDERS) at a fraction of the cost.
            orders = ALL_ORDERS if orders is None else orders
            total = sum(steps * self._rdp_one_step(sigma, q, orders) for sigma, q, steps in history)
            eps, best = rdp_analysis.get_privacy_spent(orders=list(orders), rdp=total, delta=self.cfg.delta)
            return float(eps), float(best)
        acc = ACCOUNTANT_CLASSES[self.cfg.accountant]()
        acc.history = history
        return float(acc.get_epsilon(delta=self.cfg.delta)), math.nan

    def epsilon_near_best_order(self, extra: Iterable[Entry] = ()) -> float:
        """Epsilon on the integer orders and on the fractional ones within one of the best integer order.

        Opacus' 90 fractional orders cost 0.1-0.4 s per noise multiplier (a series summed term by
        term), the integer ones about 10 ms. This takes a subset of `epsilon()`'s orders, so it is
        never below it; it equals it when epsilon, as a function of the order, has no second dip
        more than one order away from the best integer order (every case the tests sweep).
        Calibration searches with it; what the ledger reports and enforces is still `epsilon()`.
        """
        if not self.cfg.enabled or self.cfg.accountant != "rdp":
            return self.epsilon(extra)
        extra = list(extra)
        with warnings.catch_warnings():
            # at the smallest integer order Opacus warns: the fractional orders below it are added next
            warnings.filterwarnings("ignore", message="Optimal order is the", category=UserWarning)
            _, best = self._spent(extra, INTEGER_ORDERS)
        if math.isnan(best):
            return self.epsilon(extra)
        near = tuple(sorted({*INTEGER_ORDERS, *(a for a in FRACTIONAL_ORDERS if abs(a - best) < 1.0)}))
        return self.epsilon(extra, near)

    def _rdp_one_step(self, sigma: float, q: float, orders: tuple[float, ...]) -> np.ndarray:
        return np.array([unit_rdp(sigma, q, a) for a in orders])

    def can_afford(self, extra: Iterable[Entry], orders: tuple[float, ...] | None = None) -> bool:
        return self.epsilon(extra, orders) <= self.cfg.epsilon

    def spend(self, kind: str, sigma: float, sample_rate: float, steps: int = 1, round_no: int = 0) -> None:
        """Record a mechanism before it runs; raises BudgetExceeded (and records nothing) if it does not fit."""
        if not self.cfg.enabled:
            return
        entry = (float(sigma), float(sample_rate), int(steps))
        if not self.can_afford([entry]):
            raise BudgetExceeded(
                f"{kind} refused: it would take epsilon from {self.epsilon():.3f} to {self.epsilon([entry]):.3f}, "
                f"over this site's budget of {self.cfg.epsilon:g} (delta {self.cfg.delta:g})"
            )
        self.record(kind, sigma, sample_rate, steps, round_no)

    def record(self, kind: str, sigma: float, sample_rate: float, steps: int = 1, round_no: int = 0) -> None:
        """Record without the budget check, for steps already cleared by `affordable_steps`; saved at once."""
        if not self.cfg.enabled:
            return
        self._append({"kind": kind, "sigma": float(sigma), "q": float(sample_rate), "steps": int(steps), "round": int(round_no)})

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
    With the RDP accountant the search first runs on the integer orders alone: Opacus' fractional
    orders cost up to 0.4 s per noise multiplier (measured: calibration was half of a site's first
    round), the integer ones a few ms. Their epsilon is an upper bound, so their answer fits, and the
    exact answer lies a little below it: it is refined with the fractional orders near the best
    integer one (`epsilon_near_best_order`), again never below the epsilon on all orders, so the
    answer fits the budget the ledger enforces.
    """
    def planned(sigma: float) -> list[Entry]:
        return [(sigma, sample_rate, rounds * steps_per_round), (release_sigma, 1.0, rounds)]

    def fits(sigma: float, orders: tuple[float, ...] | None = None) -> bool:
        return ledger.can_afford(planned(sigma), orders)

    if not fits(hi):
        raise ConfigError(
            f"budget epsilon={ledger.cfg.epsilon:g} cannot cover {rounds} round(s) of {steps_per_round} steps at "
            f"sample rate {sample_rate:.3g} plus {rounds} prototype release(s) at sigma {release_sigma:g}: "
            "raise the budget, lower rounds/epochs, or raise proto_noise_multiplier"
        )
    if ledger.cfg.accountant == "rdp" and ledger.cfg.enabled:
        def fits_refined(sigma: float) -> bool:
            return ledger.epsilon_near_best_order(planned(sigma)) <= ledger.cfg.epsilon

        lo, hi = _below_the_integer_orders_answer(lambda s: fits(s, INTEGER_ORDERS), fits_refined, lo, hi)
        return _smallest_fitting(fits_refined, lo, hi)
    return _smallest_fitting(fits, lo, hi)


def _below_the_integer_orders_answer(fits_integer, fits_refined, lo: float, hi: float) -> tuple[float, float]:
    """A bracket (lo, hi) of the refined answer, hi fitting: from the integer orders' answer down, in widening steps."""
    with warnings.catch_warnings():
        # far below the answer the best integer order is the smallest one; Opacus warns, rightly for a reported
        # bound, needlessly for this first guess
        warnings.filterwarnings("ignore", message="Optimal order is the", category=UserWarning)
        upper = _smallest_fitting(fits_integer, lo, hi)  # fits on more orders too: their epsilon is lower
    step = 1.02
    while upper / step > lo and fits_refined(upper / step):
        upper, step = upper / step, step * step
    return max(lo, upper / step), upper


def _smallest_fitting(fits, lo: float, hi: float) -> float:
    """Bisection in log-space to 0.5%: `hi` fits, the answer is the last fitting value."""
    for _ in range(40):
        if hi / lo < 1.005:
            break
        mid = math.sqrt(lo * hi)
        lo, hi = (lo, mid) if fits(mid) else (mid, hi)
    return hi
