"""Where the tensors of training, embedding and evaluation live: CUDA when present, else the CPU."""

from __future__ import annotations

import torch

from fedxalign.shared.errors import ConfigError


def pick_device(name: str = "auto") -> torch.device:
    """`auto` takes the first CUDA device when torch sees one; `cpu`, `cuda` or `cuda:N` are taken as asked."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but torch sees no CUDA device (CPU wheel, or no GPU); use 'auto' or 'cpu'")
    return device


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device
