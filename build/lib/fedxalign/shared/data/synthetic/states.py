"""Hypnograms and the shared latent physiology that drives both modalities.

Each 30-s epoch has a sleep stage and a continuous latent (arousal, depth, REM drive) drawn
around the stage's centre with subject offsets and slow AR(1) drift. Both EEG and ECG are
functions of the latent only, so a paired recording carries the same state in both signals,
and the latent spread makes neighbouring stages overlap (N1 sits between W, N2 and REM).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import uniform_filter1d

STAGES = ("W", "N1", "N2", "N3", "REM")
# centre of (arousal, depth, rem) per stage
LATENT_CENTRE = np.array(
    [
        [1.00, 0.00, 0.00],  # W
        [0.55, 0.30, 0.20],  # N1
        [0.30, 0.60, 0.00],  # N2
        [0.10, 1.00, 0.00],  # N3
        [0.60, 0.20, 1.00],  # REM
    ]
)
# mean run length in epochs and base probability of entering each stage
RUN_MEAN = np.array([6.0, 2.5, 10.0, 8.0, 9.0])
ENTER_BASE = np.array([0.18, 0.22, 0.30, 0.14, 0.16])


@dataclass(frozen=True)
class Subject:
    """Per-subject physiology; values are drawn once per subject by `draw_subject`."""

    id: str
    latent_offset: np.ndarray
    eeg_gain: float
    alpha_peak: float
    spindle_freq: float
    base_hr: float
    hrv_scale: float
    ecg_seed: int
    resp_rate: float


def draw_subject(subject_id: str, rng: np.random.Generator) -> Subject:
    return Subject(
        id=subject_id,
        latent_offset=rng.normal(0.0, 0.08, size=3),
        eeg_gain=float(rng.lognormal(0.0, 0.25)),
        alpha_peak=float(rng.normal(10.0, 0.8)),
        spindle_freq=float(rng.uniform(12.0, 14.0)),
        base_hr=float(rng.normal(62.0, 6.0)),
        hrv_scale=float(rng.lognormal(0.0, 0.3)),
        ecg_seed=int(rng.integers(0, 2**31 - 1)),
        resp_rate=float(rng.uniform(0.2, 0.3)),
    )


def draw_hypnogram(n_epochs: int, rng: np.random.Generator, stage_tilt: np.ndarray | None = None) -> np.ndarray:
    """Stage index per epoch: runs of geometric length; `stage_tilt` reweights stage entry (site imbalance)."""
    enter = ENTER_BASE * (stage_tilt if stage_tilt is not None else 1.0)
    stages = np.empty(n_epochs, dtype=np.int64)
    current = 0  # nights start awake
    i = 0
    while i < n_epochs:
        run = 1 + rng.geometric(1.0 / RUN_MEAN[current]) - 1
        stages[i : i + run] = current
        i += run
        p = enter.copy()
        p[current] = 0.0
        current = int(rng.choice(len(STAGES), p=p / p.sum()))
    return stages


def draw_latent(stages: np.ndarray, subject: Subject, rng: np.random.Generator, spread: float = 0.2) -> np.ndarray:
    """(n_epochs, 3) latent: stage centre + subject offset + AR(1) noise (rho 0.6) of sd `spread`."""
    rho = 0.6
    noise = np.empty((len(stages), 3))
    noise[0] = rng.normal(0, spread, 3)
    for t in range(1, len(stages)):
        noise[t] = rho * noise[t - 1] + np.sqrt(1 - rho**2) * rng.normal(0, spread, 3)
    return np.clip(LATENT_CENTRE[stages] + subject.latent_offset + noise, -0.3, 1.5)


def epoch_envelope(values: np.ndarray, epoch_samples: int, ramp_samples: int) -> np.ndarray:
    """Per-epoch values as a per-sample envelope, with linear ramps across epoch edges (no steps)."""
    env = np.repeat(np.asarray(values, dtype=np.float64), epoch_samples, axis=0)
    if ramp_samples > 1:
        env = uniform_filter1d(env, size=ramp_samples, axis=0, mode="nearest")
    return env
