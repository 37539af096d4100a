"""WFDB records (`.hea` + one or more signal files + an annotation file) through the wfdb package."""

from __future__ import annotations

import re
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np
from scipy.signal import resample_poly

from fedxalign.shared.data.config import SiteConfig
from fedxalign.shared.data.readers.base import Annotation, RawRecord
from fedxalign.shared.errors import RecordError

if TYPE_CHECKING:  # wfdb (and pandas under it) loads only when a record is read: a site's rounds read cached windows
    import wfdb

_SUBJECT_COMMENT = re.compile(r"^\s*subject\s*[:=]\s*(\S+)", re.IGNORECASE)


def _signal_files(header: wfdb.Record, directory: Path) -> list[Path]:
    return [directory / f for f in dict.fromkeys(header.file_name or [])]


def read_wfdb(path: Path, site: SiteConfig) -> RawRecord:
    """Read a WFDB record given its `.hea` path; labels from `<record>.<annotation_extension>`.

    With `label_field='aux_note'` (MIT-BIH polysomnography style) each non-empty aux note
    starts a state that lasts until the next one; with `label_field='symbol'` every annotation
    is a point event (beat labels) and windows take their majority.
    """
    import wfdb

    record_path = path.with_suffix("")
    try:
        header = wfdb.rdheader(str(record_path))
    except Exception as err:
        raise RecordError(path, f"unreadable WFDB header: {type(err).__name__}: {err}") from err
    files = [path] + _signal_files(header, path.parent)
    missing = [f.name for f in files[1:] if not f.is_file()]
    if missing:
        raise RecordError(path, f"header names signal file(s) {missing} that do not exist in {path.parent}")
    try:  # smooth_frames=False: a multi-frequency signal at its own rate, not averaged down to the frame rate
        rec = wfdb.rdrecord(str(record_path), physical=True, smooth_frames=False)
    except Exception as err:
        raise RecordError(path, f"wfdb could not read the signals: {type(err).__name__}: {err}") from err
    if not rec.e_p_signal or min(len(x) for x in rec.e_p_signal) == 0:
        raise RecordError(path, "record holds no samples")
    signals, rates = _common_rate(rec)
    annotations: list[Annotation] = []
    ann_path = record_path.with_suffix("." + site.annotation_extension)
    label_note = "" if ann_path.is_file() else (
        f"annotation file {ann_path.name} not found (annotation_extension {site.annotation_extension!r})")
    if ann_path.is_file():
        try:
            ann = wfdb.rdann(str(record_path), site.annotation_extension)
        except Exception as err:
            raise RecordError(ann_path, f"unreadable annotation file: {type(err).__name__}: {err}") from err
        # sample numbers count at the annotation file's own rate when it declares one ("## time resolution"),
        # else at the record's frame rate (rdann falls back to the header's fs)
        ann_fs = float(ann.fs) if ann.fs else float(rec.fs)
        annotations = _annotations(ann, ann_fs, rec.sig_len / float(rec.fs), site.label_field)
        files.append(ann_path)
    subject = None
    for comment in rec.comments or []:
        m = _SUBJECT_COMMENT.match(comment)
        if m:
            subject = m.group(1)
            break
    return RawRecord(
        name=record_path.name,
        path=path,
        signals=signals,
        sfreq=max(rates),
        channel_sfreqs=rates if len(set(rates)) > 1 else None,
        ch_names=list(rec.sig_name),
        units=list(rec.units),
        annotations=annotations,
        subject=subject,
        files=files,
        comments=list(rec.comments or []),
        label_note=label_note,
    )


def _common_rate(rec: wfdb.Record) -> tuple[np.ndarray, list[float]]:
    """Every signal at the record's highest rate (lower-rate signals brought up by polyphase resampling), and each one's own rate."""
    spf = list(rec.samps_per_frame or [1] * rec.n_sig)
    rates = [float(rec.fs) * k for k in spf]
    top = max(spf)
    out = []
    for x, k in zip(rec.e_p_signal, spf):
        x = np.asarray(x, dtype=np.float64)
        if k != top:  # invalid samples (NaN) stay invalid at the new rate
            bad = ~np.isfinite(x)
            x = resample_poly(np.where(bad, np.nanmedian(x) if (~bad).any() else 0.0, x), top, k)
            x[bad[np.minimum(np.arange(len(x)) * k // top, len(bad) - 1)]] = np.nan
        out.append(x[: rec.sig_len * top])
    return np.vstack(out), rates


def _annotations(ann: wfdb.Annotation, ann_fs: float, duration_s: float, field: str) -> list[Annotation]:
    samples = np.asarray(ann.sample, dtype=np.int64)
    if field == "symbol":
        return [Annotation(s / ann_fs, 0.0, str(sym).strip()) for s, sym in zip(samples, ann.symbol)]
    notes = [(int(s) / ann_fs, (n or "").replace("\x00", "").strip()) for s, n in zip(samples, ann.aux_note or [])]
    notes = [(t, n) for t, n in notes if n]
    out = []
    for i, (start, note) in enumerate(notes):
        end = notes[i + 1][0] if i + 1 < len(notes) else duration_s
        out.append(Annotation(start, max(end - start, 0.0), note))
    return out


def discover_wfdb(site_dir: Path, site: SiteConfig) -> list[Path]:
    return sorted(p for p in site_dir.iterdir() if p.suffix == ".hea" and p.is_file())
