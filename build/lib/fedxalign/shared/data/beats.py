"""Beat-aware input for ECG encoders: the RR-interval series as extra channels.

A 1-s patch holds about one heart beat, so a patch-based encoder sees heart rate but hardly
its beat-to-beat variability, which is what tracks sleep stage. The R peaks are found once per
record with NeuroKit2 (polarity check, cleaning, peak detection with artefact correction) at the
record's own rate, before any resampling, so timing keeps the native resolution. Two channels
then run alongside the leads on the window grid: the RR interval of the beat each sample falls
in, and the size of its change from the previous interval. Both are in fixed physical scales
(seconds, not per-window normalised), so heart rate survives and no site's gain or noise level
changes them.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np

log = logging.getLogger(__name__)

RR_RANGE_S = (0.3, 2.0)  # physiologically plausible intervals; others are detection errors
RR_CENTRE_S, RR_SCALE_S = 1.0, 0.2
DRR_SCALE_S = 0.05
BEAT_CHANNELS = ("RR", "dRR")


def r_peaks(signal: np.ndarray, sfreq: float) -> np.ndarray:
    """Sample indices of R peaks in one lead (empty when none can be found)."""
    import neurokit2 as nk  # only ECG sites with beat channels need it

    if len(signal) < 5 * sfreq or not np.isfinite(signal).all() or np.ptp(signal) == 0:
        return np.zeros(0, np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            upright, _ = nk.ecg_invert(signal, sampling_rate=sfreq)
            cleaned = nk.ecg_clean(upright, sampling_rate=sfreq)
            _, info = nk.ecg_peaks(cleaned, sampling_rate=sfreq, correct_artifacts=True)
        except (ValueError, IndexError, ZeroDivisionError) as err:  # NeuroKit2 on a lead with no usable beats
            log.warning("R-peak detection failed (%s); the beat channels stay at their neutral value", err)
            return np.zeros(0, np.int64)
    return np.asarray(info["ECG_R_Peaks"], np.int64)


def beat_channels(peaks: np.ndarray, sfreq: float, n_out: int, out_sfreq: float) -> np.ndarray:
    """(2, n_out) RR and |dRR| step series on a grid of `n_out` samples at `out_sfreq`, scaled to about unit range.

    Each sample takes the interval that ends at the next beat; implausible intervals are
    replaced by their neighbours (the series is carried across them). With fewer than three
    beats both channels stay at 0 (a neutral heart rate, no variability).
    """
    out = np.zeros((2, n_out), np.float32)
    t = np.asarray(peaks, np.float64) / sfreq
    rr = np.diff(t)
    ok = (rr >= RR_RANGE_S[0]) & (rr <= RR_RANGE_S[1])
    if ok.sum() < 2:
        return out
    ends, rr = t[1:][ok], rr[ok]
    drr = np.abs(np.diff(rr, prepend=rr[0]))
    grid = np.arange(n_out) / out_sfreq
    k = np.clip(np.searchsorted(ends, grid), 0, len(rr) - 1)
    out[0] = (rr[k] - RR_CENTRE_S) / RR_SCALE_S
    out[1] = drr[k] / DRR_SCALE_S
    return out
