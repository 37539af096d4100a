"""From a RawRecord to labelled, normalised, fixed-length windows at the federation's rate."""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Sequence

import mne
import numpy as np
from scipy.signal import resample_poly

from fedxalign.shared.data.beats import beat_channels, r_peaks
from fedxalign.shared.data.config import PreprocessConfig, SiteConfig, check_label_map
from fedxalign.shared.data.readers.base import Annotation, RawRecord, is_electrical
from fedxalign.shared.errors import RecordError


# a label may miss this share of a window and still count as covering it (first-sample notes, rounding)
COVERAGE_SLACK = 0.01


@dataclass
class RecordWindows:
    """A record's windows: `x` (n, channels, window samples) float32, `y` (n,) class indices.

    `onsets` are window starts in seconds from the record start; `unmapped` counts annotation
    names the label map does not know; `dropped` counts windows without a usable label, by reason.
    """

    x: np.ndarray
    y: np.ndarray
    onsets: np.ndarray
    ch_names: list[str]
    unmapped: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)
    units: list[str] = field(default_factory=list)  # per picked channel, as recorded
    rates: list[float] = field(default_factory=list)  # per picked channel, its own rate before resampling
    invalid: list[int] = field(default_factory=list)  # per picked channel, invalid samples (NaN, gaps, digital extremes)
    invalid_windows: int = 0  # labelled windows dropped because they touch an invalid sample
    invalid_windows_per_channel: list[int] = field(default_factory=list)  # of those, the ones each channel's samples touch


def pick_channels(record: RawRecord, wanted: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Select `wanted` channels (exact, then case-insensitive name match); all when empty."""
    if not wanted:
        return record.signals, list(record.ch_names)
    lookup = {name: i for i, name in enumerate(record.ch_names)}
    folded = {name.strip().lower(): i for i, name in enumerate(record.ch_names)}
    idx, missing = [], []
    for name in wanted:
        i = lookup.get(name, folded.get(name.strip().lower()))
        (missing.append(name) if i is None else idx.append(i))
    if missing:
        raise RecordError(record.path, f"channel(s) {missing} not found; the record has {record.ch_names}")
    return record.signals[idx], [record.ch_names[i] for i in idx]


def check_units(record: RawRecord, names: list[str], allowed: Sequence[str]) -> list[str]:
    """The unit of each picked channel; a non-electrical one (degC, %, mmHg) is refused unless the site allows it."""
    unit_of = dict(zip(record.ch_names, record.units))
    units = [unit_of.get(n, "") for n in names]
    ok = {u.lower() for u in allowed}
    bad = [f"{n} ({u or 'no unit'})" for n, u in zip(names, units) if not is_electrical(u) and u.lower() not in ok]
    if bad:
        raise RecordError(record.path, f"channel(s) {bad} do not carry an electrical unit (V, mV, uV); "
                                       "pick other channels, or list the unit in the site's allowed_units")
    return units


MAX_INVALID_SHARE = 0.5  # a channel with more invalid samples than this is refused, not patched


def mend_invalid(record: RawRecord, data: np.ndarray, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Invalid samples (NaN/inf: WFDB gaps, EDF digital extremes) bridged by linear interpolation so filters stay finite.

    Returns the mended data and the per-channel invalid count. The windows that touch an invalid
    sample are dropped later (`invalid_windows`); a channel that is mostly invalid is refused by name.
    """
    invalid = ~np.isfinite(data)
    counts = invalid.sum(axis=1)
    mostly = [f"{n} ({c / data.shape[1]:.0%} invalid)" for n, c in zip(names, counts) if c > MAX_INVALID_SHARE * data.shape[1]]
    if mostly:
        raise RecordError(record.path, f"channel(s) {mostly} are mostly invalid samples (gaps, NaN, digital extremes)")
    if not counts.any():
        return data, counts
    data = data.copy()
    t = np.arange(data.shape[1])
    for c in np.flatnonzero(counts):
        good = ~invalid[c]
        data[c, ~good] = np.interp(t[~good], t[good], data[c, good])
    return data, counts


def invalid_windows(invalid_any: np.ndarray, sfreq: float, window_s: float, n_win: int) -> np.ndarray:
    """Boolean (n_win,): windows that hold at least one invalid sample of any picked channel."""
    bad = np.zeros(n_win, bool)
    idx = np.unique((np.flatnonzero(invalid_any) / sfreq // window_s).astype(int))
    bad[idx[idx < n_win]] = True
    return bad


def check_signals(record: RawRecord, data: np.ndarray, names: list[str], cfg: PreprocessConfig) -> None:
    """Reject flat channels, too-low sampling rates and too-short records, naming the file (invalid samples are mended first)."""
    flat = [n for n, s in zip(names, data.std(axis=1)) if s <= cfg.flat_std]
    if flat:
        raise RecordError(record.path, f"flat channel(s) {flat} (standard deviation <= {cfg.flat_std})")
    slow = [f"{n} ({record.channel_rate(n):g} Hz)" for n in names if record.channel_rate(n) < cfg.sfreq]
    if slow:  # each picked channel's own rate decides, whatever its neighbours' rates
        raise RecordError(
            record.path,
            f"sampling rate of channel(s) {slow} is below the federation's {cfg.sfreq:g} Hz; "
            "upsampling would invent content the recording does not hold",
        )
    if record.duration_s < cfg.window_s:
        raise RecordError(record.path, f"record lasts {record.duration_s:.1f} s, shorter than one {cfg.window_s:g}-s window")


def resample_and_filter(data: np.ndarray, sfreq: float, cfg: PreprocessConfig) -> np.ndarray:
    """Polyphase resampling (with its anti-alias filter) first, then notch and band-pass at the target rate."""
    if abs(sfreq - cfg.sfreq) > 1e-9:
        ratio = Fraction(cfg.sfreq / sfreq).limit_denominator(1000)
        data = resample_poly(data, ratio.numerator, ratio.denominator, axis=1)
    if cfg.notch is not None and cfg.notch < cfg.sfreq / 2:
        data = mne.filter.notch_filter(data, cfg.sfreq, cfg.notch, verbose="error")
    if cfg.l_freq is not None or cfg.h_freq is not None:
        data = mne.filter.filter_data(data, cfg.sfreq, cfg.l_freq, cfg.h_freq, verbose="error")
    return data


def normalise(windows: np.ndarray, method: str, clip: float) -> np.ndarray:
    """Per-window, per-channel scaling so that gains and offsets across sites do not matter."""
    if method == "none":
        return windows
    if method == "robust":
        centre = np.median(windows, axis=-1, keepdims=True)
        q75, q25 = np.percentile(windows, [75, 25], axis=-1, keepdims=True)
        scale = (q75 - q25) / 1.349  # IQR of a standard normal
    else:
        centre = windows.mean(axis=-1, keepdims=True)
        scale = windows.std(axis=-1, keepdims=True)
    scale = np.where(scale > 0, scale, 1.0)
    return np.clip((windows - centre) / scale, -clip, clip)


def label_windows(
    annotations: Sequence[Annotation],
    onsets: np.ndarray,
    window_s: float,
    label_map: dict[str, str],
    vocabulary: Sequence[str],
    coverage: float,
) -> tuple[np.ndarray, Counter, Counter]:
    """Class index per window, or -1; spans need `coverage` of the window, point events a majority share."""
    index = {name: i for i, name in enumerate(vocabulary)}
    unmapped = Counter(a.label for a in annotations if a.label not in label_map)
    spans = [a for a in annotations if a.duration > 0]
    points = [a for a in annotations if a.duration == 0]
    labels = np.full(len(onsets), -1, dtype=np.int64)
    dropped: Counter = Counter()
    span_on = np.array([a.onset for a in spans]) if spans else np.zeros(0)
    span_end = np.array([a.onset + a.duration for a in spans]) if spans else np.zeros(0)
    point_on = np.array([a.onset for a in points]) if points else np.zeros(0)
    for w, t0 in enumerate(onsets):
        t1 = t0 + window_s
        cover: Counter = Counter()
        if spans:
            overlap = np.clip(np.minimum(span_end, t1) - np.maximum(span_on, t0), 0, None)
            for k in np.flatnonzero(overlap > 0):
                cover[spans[k].label] += overlap[k] / window_s
        elif points:
            inside = np.flatnonzero((point_on >= t0) & (point_on < t1))
            for k in inside:
                cover[points[k].label] += 1.0 / len(inside)
        mapped: Counter = Counter()
        for name, share in cover.items():
            if name in label_map:
                mapped[label_map[name]] += share
        if not cover:
            dropped["no annotation"] += 1
        elif not mapped:
            dropped["unmapped label"] += 1
        else:
            best, share = mapped.most_common(1)[0]
            if share >= coverage - COVERAGE_SLACK:
                labels[w] = index[best]
            else:
                dropped["mixed labels"] += 1
    return labels, unmapped, dropped


def preprocess_record(
    record: RawRecord, site: SiteConfig, cfg: PreprocessConfig, vocabulary: Sequence[str]
) -> RecordWindows:
    """Pick, check, resample, filter, cut into windows, label and normalise one record."""
    check_label_map(site, vocabulary)
    data, names = pick_channels(record, site.channels)
    units = check_units(record, names, site.allowed_units)
    invalid_mask = ~np.isfinite(data)
    data, invalid = mend_invalid(record, data, names)
    check_signals(record, data, names, cfg)
    peaks = r_peaks(data[0], record.sfreq) if cfg.beat_channels else None
    data = resample_and_filter(data, record.sfreq, cfg)
    n_win = data.shape[1] // cfg.window_samples
    onsets = np.arange(n_win) * cfg.window_s
    annotations = record.annotations
    if site.label_first_token:
        annotations = [dataclasses.replace(a, label=a.label.split()[0]) if a.label.split() else a for a in annotations]
    y, unmapped, dropped = label_windows(annotations, onsets, cfg.window_s, site.label_map, vocabulary, cfg.label_coverage)
    labelled = y >= 0
    per_channel = [invalid_windows(m, record.sfreq, cfg.window_s, n_win) & labelled for m in invalid_mask]
    bad = np.any(per_channel, axis=0) if per_channel else np.zeros(n_win, bool)
    if bad.any():
        dropped["invalid samples"] += int(bad.sum())
    keep = (y >= 0) & ~bad
    windows = data[:, : n_win * cfg.window_samples].reshape(len(names), n_win, cfg.window_samples)
    windows = np.ascontiguousarray(windows.transpose(1, 0, 2)[keep])
    x = normalise(windows, cfg.normalisation, cfg.clip).astype(np.float32)
    if peaks is not None:  # physical scales, not per-window normalised: heart rate must survive
        beats = beat_channels(peaks, record.sfreq, n_win * cfg.window_samples, cfg.sfreq)
        beats = beats.reshape(2, n_win, cfg.window_samples).transpose(1, 0, 2)[keep]
        x = np.concatenate([x, np.clip(beats, -cfg.clip, cfg.clip)], axis=1)
    return RecordWindows(x=x, y=y[keep], onsets=onsets[keep], ch_names=names, unmapped=unmapped, dropped=dropped,
                         units=units, rates=[record.channel_rate(n) for n in names], invalid=[int(c) for c in invalid],
                         invalid_windows=int(bad.sum()), invalid_windows_per_channel=[int(b.sum()) for b in per_channel])
