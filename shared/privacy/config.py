"""A site's privacy settings: its own budget, the DP-SGD clip and the prototype release parameters."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from fedxalign.shared.errors import ConfigError, check_option
from fedxalign.shared.schema import build

ACCOUNTANTS = ("rdp", "prv")
UNITS = ("window", "subject")  # weakest first: a subject-level guarantee covers each of its windows


@dataclass(frozen=True)
class PrivacyConfig:
    """`enabled: false` is the only way to turn DP off; the site then reports epsilon = inf.

    `epsilon`/`delta` bound everything the site releases over the whole run (all DP-SGD steps
    of all rounds plus every prototype release). `proto_noise_multiplier` is sigma of the
    Gaussian release of per-class (sum / clip, count); `min_count` suppresses classes whose
    noisy count falls under it. `unit` is what one DP record is: `window` (one 30-s window;
    a patient with k windows gets only group privacy, about k epsilon) or `subject` (one patient:
    each DP-SGD step Poisson-samples patients and uses one window of each, and each patient's
    prototype contribution is bounded as a whole).
    """

    enabled: bool = True
    epsilon: float = 8.0
    delta: float = 1e-5
    accountant: str = "rdp"
    max_grad_norm: float = 1.0
    proto_clip: float = 1.0
    proto_noise_multiplier: float = 8.0
    min_count: float = 5.0
    unit: str = "window"

    def __post_init__(self) -> None:
        check_option("accountant", self.accountant, ACCOUNTANTS)
        check_option("unit", self.unit, UNITS)
        if self.enabled and not (self.epsilon > 0 and math.isfinite(self.epsilon)):
            raise ConfigError(f"{self.epsilon=} must be a positive finite budget; set enabled: false to turn DP off")
        if not 0 < self.delta < 1:
            raise ConfigError(f"{self.delta=} must lie in (0, 1)")
        if self.max_grad_norm <= 0 or self.proto_clip <= 0 or self.proto_noise_multiplier <= 0:
            raise ConfigError("max_grad_norm, proto_clip and proto_noise_multiplier must be positive")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> PrivacyConfig:
        return build(cls, values, "privacy")
