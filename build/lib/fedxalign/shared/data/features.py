"""Hand-crafted per-window features (EEG band powers; ECG heart rate and HRV) for yardstick baselines."""

from __future__ import annotations

import numpy as np
from scipy.signal import find_peaks, welch

EEG_BANDS = {"delta": (0.5, 4.0), "theta": (4.0, 8.0), "alpha": (8.0, 12.0), "sigma": (11.0, 16.0), "beta": (16.0, 30.0)}


def eeg_band_powers(x: np.ndarray, sfreq: float) -> np.ndarray:
    """(n, channels, samples) -> (n, 5 + 1): log relative band power averaged over channels, and spectral slope."""
    f, p = welch(x, fs=sfreq, nperseg=int(4 * sfreq), axis=-1)
    total = p[..., (f >= 0.5) & (f <= 30)].sum(-1) + 1e-12
    rel = [np.log(p[..., (f >= lo) & (f < hi)].sum(-1) / total + 1e-9).mean(-1) for lo, hi in EEG_BANDS.values()]
    sel = (f >= 1) & (f <= 30)
    slope = np.polyfit(np.log(f[sel]), np.log(p[..., sel].mean(1).T + 1e-12), 1)[0]
    return np.column_stack(rel + [slope])


def ecg_hrv(x: np.ndarray, sfreq: float) -> np.ndarray:
    """(n, leads, samples) -> (n, 6): HR, SDNN, RMSSD, pNN50, RR range and QRS-to-rest power, from the first lead.

    R peaks: prominent maxima of the absolute first difference (no template), at least 0.33 s apart.
    """
    out = np.zeros((len(x), 6))
    for i, w in enumerate(x[:, 0]):
        d = np.abs(np.diff(w))
        peaks, _ = find_peaks(d, distance=int(0.33 * sfreq), height=np.percentile(d, 98) * 0.5)
        rr = np.diff(peaks) / sfreq
        rr = rr[(rr > 0.33) & (rr < 2.0)]
        if len(rr) < 3:
            out[i] = [60.0, 0, 0, 0, 0, 0]
            continue
        drr = np.diff(rr)
        f, p = welch(w, fs=sfreq, nperseg=min(len(w), int(4 * sfreq)))
        qrs = p[(f >= 8) & (f < 25)].sum() / (p[(f >= 0.5) & (f < 8)].sum() + 1e-12)
        out[i] = [60.0 / rr.mean(), rr.std(), np.sqrt(np.mean(drr**2)), np.mean(np.abs(drr) > 0.05), np.ptp(rr), np.log(qrs + 1e-9)]
    return out


FEATURES = {"eeg": eeg_band_powers, "ecg": ecg_hrv}
