"""From Hydra's composed config to the typed RunSettings of a simulation."""

from __future__ import annotations

import math

from omegaconf import DictConfig, OmegaConf

from fedxalign.shared.runconfig import RunSettings


def run_settings(cfg: DictConfig) -> RunSettings:
    """`privacy.epsilon=inf` means no DP, so that `-m privacy.epsilon=3,8,inf` sweeps the whole privacy-utility curve."""
    values = OmegaConf.to_container(cfg, resolve=True)
    privacy = values["privacy"]
    if math.isinf(float(privacy.get("epsilon", 8.0))):
        privacy["enabled"] = False
    if not privacy.get("enabled", True):
        privacy["epsilon"] = 1.0  # unused when DP is off; keeps the schema's finite-budget check simple
    return RunSettings.from_nested(values)
