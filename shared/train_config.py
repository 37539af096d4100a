"""Local optimisation settings of a site, shared by the site (which trains) and the server (which schedules)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from fedxalign.shared.schema import build


@dataclass(frozen=True)
class TrainConfig:
    """Local optimisation; `planned_rounds` sizes the DP noise so the whole run fits the budget."""

    local_epochs: int = 5
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.5
    momentum: float = 0.9
    tau: float = 0.1
    pull_weight: float = 0.5
    orth_weight: float = 0.1
    planned_rounds: int = 6  # a run sets it to federation.rounds
    seed: int = 0
    trainable: str = "all"  # all | top | head: what DP fine-tuning trains (shared/models/encoder.py::set_trainable)
    top_layers: int = 1
    device: str = "auto"  # auto (CUDA when present) | cpu | cuda[:N]

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> TrainConfig:
        return build(cls, values, "training")
