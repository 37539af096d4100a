"""A site's own privacy policy, and the one function that holds a run's request against it.

The policy lives with the site (a `policy.yaml` beside `site.yaml`, a file named by
`node_config`, or `node_config` keys); the coordinator's run config can only ask for what
the policy already allows or for something stricter. A request that would weaken the policy
is refused by the name of the policy key, before the site reads a window or spends any budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from fedxalign.shared.errors import ConfigError, FedXAlignError, check_option
from fedxalign.shared.privacy.config import UNITS, PrivacyConfig
from fedxalign.shared.schema import build

POLICY_FILE = "policy.yaml"


class PolicyRefusal(FedXAlignError):
    """The run asked for something the site's policy forbids; `key` names the policy key (never a data value)."""

    def __init__(self, key: str, why: str) -> None:
        self.key = key
        super().__init__(f"refused by the site's policy key {key!r}: {why}")


@dataclass(frozen=True)
class SitePolicy:
    """What a site allows. Defaults are the strict ones a hospital gets without writing a policy.

    `epsilon`/`delta`: the most the run may spend of this site over its whole life (one ledger).
    `unit`: the weakest privacy unit allowed (`subject` forbids window-level runs).
    `share_weights`: DP-SGD-trained encoder weights may leave. `share_metrics`: aggregate
    held-out scores (not DP) may leave. `share_train_loss`: one non-DP training loss may leave.
    `max_rounds`: the most training rounds the site takes part in.
    """

    dp_required: bool = True
    epsilon: float = 8.0
    delta: float = 1e-5
    unit: str = "window"
    share_weights: bool = True
    share_metrics: bool = False
    share_train_loss: bool = False
    max_rounds: int = 50

    def __post_init__(self) -> None:
        check_option("policy unit", self.unit, UNITS)
        if self.dp_required and not (self.epsilon > 0 and math.isfinite(self.epsilon)):
            raise ConfigError(f"policy {self.epsilon=} must be a positive finite budget while dp_required is true")
        if not 0 < self.delta < 1:
            raise ConfigError(f"policy {self.delta=} must lie in (0, 1)")
        if self.max_rounds < 1:
            raise ConfigError(f"policy {self.max_rounds=} must be at least 1")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> SitePolicy:
        return build(cls, values, "site policy")

    @classmethod
    def load(cls, site_dir: Path, path: Path | None = None, named: str = "policy file") -> SitePolicy:
        """`path` (which must exist; `named` says where it was given), else `<site_dir>/policy.yaml` when present, else the strict defaults."""
        if path is not None and not path.is_file():
            raise ConfigError(f"{named} {path} does not exist")
        path = path if path is not None else site_dir / POLICY_FILE
        if not path.is_file():
            return cls()
        return cls.from_mapping(yaml.safe_load(path.read_text()) or {})

    @classmethod
    def permitting(cls, privacy: PrivacyConfig, *, share_weights: bool, share_train_loss: bool, rounds: int) -> SitePolicy:
        """The policy of a simulated site whose owner (the researcher) asks exactly for the run's settings."""
        return cls(dp_required=privacy.enabled, epsilon=privacy.epsilon if privacy.enabled else math.inf,
                   delta=privacy.delta, unit=privacy.unit, share_weights=share_weights, share_metrics=True,
                   share_train_loss=share_train_loss, max_rounds=max(rounds, 1))


@dataclass(frozen=True)
class RoundRequest:
    """What the coordinator's run asks of a site for one training round."""

    privacy: PrivacyConfig
    share_weights: bool
    report_train_loss: bool
    round: int


def enforce(policy: SitePolicy, request: RoundRequest) -> PrivacyConfig:
    """The privacy settings the site will use, or PolicyRefusal naming the first policy key the request would weaken."""
    p = request.privacy
    if policy.dp_required and not p.enabled:
        raise PolicyRefusal("dp_required", "the run turns differential privacy off")
    if p.enabled and p.epsilon > policy.epsilon:
        raise PolicyRefusal("epsilon", "the run asks for a larger budget than the site allows")
    if p.delta > policy.delta:
        raise PolicyRefusal("delta", "the run asks for a larger delta than the site allows")
    if UNITS.index(p.unit) < UNITS.index(policy.unit):
        raise PolicyRefusal("unit", "the run asks for a weaker privacy unit than the site allows")
    if request.share_weights and not policy.share_weights:
        raise PolicyRefusal("share_weights", "the run asks for encoder weights; the site keeps them")
    if request.report_train_loss and not policy.share_train_loss:
        raise PolicyRefusal("share_train_loss", "the run asks for the (non-private) training loss")
    if request.round > policy.max_rounds:
        raise PolicyRefusal("max_rounds", "the run asks for more rounds than the site takes part in")
    return p


def group_guarantee(epsilon: float, delta: float, k: int) -> tuple[float, float]:
    """(epsilon, delta)-DP per window gives a group of k windows (one patient's) (k eps, k e^((k-1) eps) delta)-DP.

    The standard group-privacy bound (Dwork & Roth 2014, Thm 2.2 and its (eps, delta) form); it is
    loose, but it is what window-level DP promises a patient. A delta of 1 or more means no guarantee.
    """
    k = max(int(k), 1)
    return k * epsilon, min(1.0, k * math.exp(min((k - 1) * epsilon, 700.0)) * delta)


def describe_unit(policy_epsilon: float, delta: float, unit: str, max_windows_per_subject: int) -> str:
    """One line a site reads before it joins: what its budget means for one patient."""
    if unit == "subject":
        return f"privacy unit: subject (patient); each patient is protected at epsilon {policy_epsilon:g}, delta {delta:g}"
    g_eps, g_delta = group_guarantee(policy_epsilon, delta, max_windows_per_subject)
    meaning = "no meaningful guarantee" if g_delta >= 1.0 else f"delta {g_delta:.2g}"
    return (f"privacy unit: window; epsilon {policy_epsilon:g} per 30-s window, but one patient contributes up to "
            f"{max_windows_per_subject} windows: per patient, group privacy gives epsilon {g_eps:g} ({meaning}); "
            "set unit: subject in policy.yaml to protect patients")
