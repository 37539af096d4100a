"""Hand-made recordings with known content, written through the project's real-format writers."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from fedxalign.shared.data.synthetic.writers import write_edf, write_wfdb


def sine_channels(n_ch: int, seconds: float, fs: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * fs)) / fs
    return np.stack([20 * np.sin(2 * np.pi * (5 + c) * t) + rng.normal(0, 5, t.size) for c in range(n_ch)])


def alternating_edf(path: Path, labels: list[str], fs: float = 100.0, epoch: float = 30.0, subject: str = "S1",
                    ch_names=("Fpz-Cz", "Pz-Oz")) -> None:
    """An EDF+ whose i-th 30-s epoch is annotated `labels[i]`."""
    data = sine_channels(len(ch_names), epoch * len(labels), fs)
    write_edf(path, data, fs, list(ch_names), subject, [(i * epoch, epoch, lab) for i, lab in enumerate(labels)])


def notes_wfdb(folder: Path, record: str, labels: list[str], fs: float = 250.0, epoch: float = 30.0, subject: str = "S1") -> None:
    data = sine_channels(1, epoch * len(labels), fs) / 100.0
    write_wfdb(folder, record, data, fs, ["ECG"], subject, "16", [(i * epoch, lab) for i, lab in enumerate(labels)])


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}
