"""Training sets that carry each window's parameter-free encoder inputs, computed once instead of once per epoch.

A dataset's items become (*windows, *inputs of each window, label): one `WindowInputs` per
window tensor, from the encoder that will read it. The values are what the encoder would
compute from the window in its forward pass, so training reads the same numbers; each window's
inputs depend on that window alone, so DP-SGD's per-sample clipping is untouched.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from fedxalign.shared.data.site import WindowDataset
from fedxalign.shared.models.encoder import CrissCrossEncoder, WindowInputs

BATCH = 256  # windows per pass when computing the inputs


class WithWindowInputs(torch.utils.data.Dataset):
    """`windows[k]` read by `encoders[k]`; `y` the labels and `subject` the patients (the DP loaders read both)."""

    def __init__(self, windows: Sequence[torch.Tensor], encoders: Sequence[CrissCrossEncoder], y: torch.Tensor,
                 subject: np.ndarray | None = None) -> None:
        if len(windows) != len(encoders):
            raise ValueError(f"{len(windows)} window tensors for {len(encoders)} encoders")
        self.windows = list(windows)
        self.inputs = [_inputs_of(e, w) for e, w in zip(encoders, windows)]
        self.y = y
        self.subject = subject if subject is not None else np.full(len(y), "", dtype=object)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        return (*(w[i] for w in self.windows), *(t[i] for inp in self.inputs for t in inp), self.y[i])


def for_windows(ds: WindowDataset, encoder: CrissCrossEncoder) -> WithWindowInputs:
    """A site's (window, label) split with `encoder`'s inputs of each window."""
    return WithWindowInputs([ds.x], [encoder], ds.y, ds.subject)


def _inputs_of(encoder: CrissCrossEncoder, x: torch.Tensor) -> WindowInputs:
    parts = [encoder.window_inputs(x[i : i + BATCH]) for i in range(0, len(x), BATCH)]
    if not parts:
        return encoder.window_inputs(x)
    return WindowInputs(*(torch.cat(field) for field in zip(*parts)))


def split_batch(batch: Sequence[torch.Tensor], n_windows: int) -> tuple[list[torch.Tensor], list[WindowInputs | None], torch.Tensor]:
    """(windows, their inputs or None each, labels) of a batch from a `WithWindowInputs` or a plain (*windows, label) dataset."""
    windows, rest, y = list(batch[:n_windows]), list(batch[n_windows:-1]), batch[-1]
    if not rest:
        return windows, [None] * n_windows, y
    k = len(WindowInputs._fields)
    if len(rest) != k * n_windows:
        raise ValueError(f"a batch of {len(batch)} tensors is neither {n_windows} windows and a label nor those with their inputs")
    return windows, [WindowInputs(*rest[j * k : (j + 1) * k]) for j in range(n_windows)], y
