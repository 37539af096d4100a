"""From Hydra's composed config to the typed RunSettings of a simulation."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from shared.runconfig import RunSettings


def run_settings(cfg: DictConfig) -> RunSettings:
    values = OmegaConf.to_container(cfg, resolve=True)
    if not values["privacy"].get("enabled", True):
        values["privacy"]["epsilon"] = 1.0  # unused when disabled; keeps the schema valid for eps=inf sweeps
    return RunSettings.from_nested(values)
