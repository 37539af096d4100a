"""DP-SGD batch sampling with the site's secure generator: Poisson over windows, or over patients.

Both loaders expose `sample_rate`, the probability with which one privacy unit (a window or a
patient) enters a step: exactly what the ledger must record. Following Opacus, the rate is
1 / ceil(units / batch_size), so an epoch holds ceil(units / batch_size) steps.
"""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np
import torch
from opacus.data_loader import DPDataLoader, wrap_collate_with_empty
from torch.utils.data import DataLoader, Dataset
from torch.utils.data._utils.collate import default_collate


def poisson_rate(units: int, batch_size: int) -> float:
    return 1.0 / math.ceil(units / max(1, min(batch_size, units)))


def window_loader(dataset: Dataset, batch_size: int, generator: torch.Generator) -> DPDataLoader:
    """Opacus' Poisson loader over windows, driven by `generator` (Opacus would otherwise use torch's global RNG)."""
    return DPDataLoader(dataset, sample_rate=poisson_rate(len(dataset), batch_size), generator=generator)


class SubjectPoissonSampler:
    """Each step: every subject enters with probability `sample_rate`; each entering subject gives ONE uniformly drawn window.

    A subject then touches at most one per-sample gradient per step, so per-sample clipping
    bounds its whole contribution and the Poisson subsampling amplification applies to subjects.
    """

    def __init__(self, subjects: np.ndarray, sample_rate: float, generator: torch.Generator) -> None:
        names, inverse = np.unique(np.asarray(subjects).astype(str), return_inverse=True)
        self.windows = [torch.from_numpy(np.flatnonzero(inverse == k)) for k in range(len(names))]
        self.sample_rate = sample_rate
        self.generator = generator
        self.steps = round(1 / sample_rate)

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[int]]:
        for _ in range(self.steps):
            chosen = torch.rand(len(self.windows), generator=self.generator) < self.sample_rate
            picks = []
            for k in torch.nonzero(chosen).flatten().tolist():
                idx = self.windows[k]
                picks.append(int(idx[torch.randint(len(idx), (1,), generator=self.generator)]))
            yield picks


def subject_loader(dataset: Dataset, subjects: np.ndarray, batch_size: int, generator: torch.Generator) -> DataLoader:
    n_subjects = len(np.unique(np.asarray(subjects).astype(str)))  # the rate depends on it, so it comes first
    sampler = SubjectPoissonSampler(subjects, poisson_rate(n_subjects, batch_size), generator)
    sample = dataset[0]
    collate = wrap_collate_with_empty(collate_fn=default_collate, sample_empty_shapes=[(0, *x.shape) for x in sample],
                                      dtypes=[x.dtype for x in sample])
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate)
    loader.sample_rate = sampler.sample_rate  # type: ignore[attr-defined]
    loader.expected_batch_size = max(1, round(n_subjects * sampler.sample_rate))  # type: ignore[attr-defined]
    return loader
