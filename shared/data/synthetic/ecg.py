"""State-dependent ECG: ECGSYN (McSharry et al. 2003, via NeuroKit2) beat morphology, placed on a
state-driven RR tachogram with respiratory sinus arrhythmia and LF variability.

Running ECGSYN over whole nights costs about 1 s per minute of signal; instead one ECGSYN beat
per subject and lead is placed beat by beat, stretched with the RR interval (QT adapts to heart
rate), so heart rate, HRV and T-wave amplitude follow the latent state epoch by epoch.
"""

from __future__ import annotations

import logging

import numpy as np

from fedxalign.shared.data.synthetic.eeg import band_noise
from fedxalign.shared.data.synthetic.states import Subject

logging.getLogger("neurokit2").setLevel(logging.ERROR)

# lead gains relative to lead II for common lead names; unknown leads get a random gain
LEAD_GAIN = {"I": 0.7, "II": 1.0, "III": 0.4, "MLII": 1.0, "V1": -0.6, "V2": 0.3, "V5": 0.9, "V6": 0.8, "ECG": 1.0}


def ecgsyn_beat(fs: float, seed: int) -> tuple[np.ndarray, int]:
    """One median beat at 60 bpm from ECGSYN and the index of its R peak (mV)."""
    import neurokit2 as nk  # only generating needs it: importing it cost every process that reads a federation about 3.8 CPU-s

    sig = np.asarray(nk.ecg_simulate(duration=12, sampling_rate=int(fs), heart_rate=60, heart_rate_std=0.5,
                                     method="ecgsyn", noise=0.0, random_state=seed), dtype=np.float64)
    half = int(0.3 * fs)
    peaks = [i for i in range(int(fs), len(sig) - int(fs)) if sig[i] == sig[i - half : i + half].max() and sig[i] > 0.5 * sig.max()]
    pre, post = int(0.35 * fs), int(0.65 * fs)
    beats = np.stack([sig[p - pre : p + post] for p in peaks if p - pre >= 0 and p + post <= len(sig)])
    beat = np.median(beats, axis=0)
    beat -= np.median(np.r_[beat[: int(0.05 * fs)], beat[-int(0.1 * fs) :]])
    taper = np.ones_like(beat)
    k = int(0.05 * fs)
    taper[:k] = np.linspace(0, 1, k)
    taper[-k:] = np.linspace(1, 0, k)
    return beat * taper / np.abs(beat).max(), pre


def rr_series(latent: np.ndarray, subject: Subject, epoch_s: float, total_s: float, rng: np.random.Generator) -> np.ndarray:
    """Beat times (s). HR rises with arousal and REM and falls with depth; RSA grows with depth,
    irregular LF variability with arousal and REM."""
    arousal, depth, rem = latent[:, 0], latent[:, 1], latent[:, 2]
    hr = subject.base_hr + 12.0 * arousal - 5.0 * depth + 6.0 * rem + rng.normal(0, 1.5, len(latent))
    rsa = subject.hrv_scale * (0.02 + 0.05 * np.clip(depth, 0, None))
    lf = subject.hrv_scale * (0.01 + 0.03 * np.clip(arousal, 0, None) + 0.05 * np.clip(rem, 0, None))
    grid_fs = 4.0
    lf_proc = band_noise(int(total_s * grid_fs) + 8, grid_fs, 0.04, 0.15, rng)
    times, t = [], float(rng.uniform(0, 0.5))
    while t < total_s:
        e = min(int(t // epoch_s), len(latent) - 1)
        rr = 60.0 / hr[e]
        rr *= 1 + rsa[e] * np.sin(2 * np.pi * subject.resp_rate * t) + lf[e] * lf_proc[int(t * grid_fs)]
        rr += rng.normal(0, 0.008 * subject.hrv_scale * (1 + 2 * max(rem[e], 0)))
        times.append(t)
        t += float(np.clip(rr, 0.33, 2.0))
    return np.asarray(times)


def simulate_ecg(
    latent: np.ndarray,
    subject: Subject,
    lead_names: list[str],
    fs: float,
    epoch_s: float,
    noise_mv: float,
    line_hz: float | None,
    line_mv: float,
    wander_mv: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """ECG in millivolts, shape (leads, epochs x epoch samples)."""
    n = int(round(len(latent) * epoch_s * fs))
    total_s = n / fs
    beat, r_idx = ecgsyn_beat(fs, subject.ecg_seed)
    t_start = r_idx + int(0.15 * fs)  # T wave and after
    beats = rr_series(latent, subject, epoch_s, total_s, rng)
    rr = np.diff(np.r_[beats, beats[-1] + 1.0])
    arousal, depth = latent[:, 0], latent[:, 1]
    base = np.zeros(n)
    for tb, r in zip(beats, rr):
        e = min(int(tb // epoch_s), len(latent) - 1)
        scale = np.sqrt(np.clip(r, 0.4, 1.6))  # Bazett: QT ~ sqrt(RR)
        src = np.arange(len(beat))
        m = int(len(beat) * scale)
        warped = np.interp(np.linspace(0, len(beat) - 1, m), src, beat)
        t_gain = 1.0 + 0.35 * (depth[e] - arousal[e])
        warped[int(t_start * scale) :] *= t_gain
        start = int(round(tb * fs)) - int(r_idx * scale)
        lo, hi = max(0, start), min(n, start + m)
        if hi > lo:
            base[lo:hi] += warped[lo - start : hi - start]
    t = np.arange(n) / fs
    resp = np.sin(2 * np.pi * subject.resp_rate * t)
    out = np.empty((len(lead_names), n))
    emg_env = np.repeat(np.clip(arousal, 0, None), int(round(epoch_s * fs)))[:n]
    for k, name in enumerate(lead_names):
        gain = LEAD_GAIN.get(name.upper(), float(rng.uniform(0.4, 1.1)))
        x = gain * base * (1 + 0.08 * resp)  # respiration modulates QRS amplitude
        x += wander_mv * (0.6 * resp + band_noise(n, fs, 0.05, 0.5, rng))
        x += noise_mv * rng.standard_normal(n) + 0.02 * emg_env * band_noise(n, fs, 20.0, min(45.0, fs / 2 - 1), rng)
        if line_hz is not None and line_hz < fs / 2:
            x += line_mv * np.sin(2 * np.pi * line_hz * t + rng.uniform(0, 2 * np.pi))
        out[k] = x
    return out
