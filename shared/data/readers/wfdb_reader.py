"""WFDB records (`.hea` + one or more signal files + an annotation file) through the wfdb package."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import wfdb

from shared.data.config import SiteConfig
from shared.data.readers.base import Annotation, RawRecord
from shared.errors import RecordError

_SUBJECT_COMMENT = re.compile(r"^\s*subject\s*[:=]\s*(\S+)", re.IGNORECASE)


def _signal_files(header: wfdb.Record, directory: Path) -> list[Path]:
    return [directory / f for f in dict.fromkeys(header.file_name or [])]


def read_wfdb(path: Path, site: SiteConfig) -> RawRecord:
    """Read a WFDB record given its `.hea` path; labels from `<record>.<annotation_extension>`.

    With `label_field='aux_note'` (MIT-BIH polysomnography style) each non-empty aux note
    starts a state that lasts until the next one; with `label_field='symbol'` every annotation
    is a point event (beat labels) and windows take their majority.
    """
    record_path = path.with_suffix("")
    try:
        header = wfdb.rdheader(str(record_path))
    except Exception as err:
        raise RecordError(path, f"unreadable WFDB header: {type(err).__name__}: {err}") from err
    files = [path] + _signal_files(header, path.parent)
    missing = [f.name for f in files[1:] if not f.is_file()]
    if missing:
        raise RecordError(path, f"header names signal file(s) {missing} that do not exist in {path.parent}")
    try:
        rec = wfdb.rdrecord(str(record_path), physical=True)
    except Exception as err:
        raise RecordError(path, f"wfdb could not read the signals: {type(err).__name__}: {err}") from err
    if rec.p_signal is None or rec.p_signal.size == 0:
        raise RecordError(path, "record holds no samples")
    annotations: list[Annotation] = []
    ann_path = record_path.with_suffix("." + site.annotation_extension)
    label_note = "" if ann_path.is_file() else (
        f"annotation file {ann_path.name} not found (annotation_extension {site.annotation_extension!r})")
    if ann_path.is_file():
        try:
            ann = wfdb.rdann(str(record_path), site.annotation_extension)
        except Exception as err:
            raise RecordError(ann_path, f"unreadable annotation file: {type(err).__name__}: {err}") from err
        annotations = _annotations(ann, rec.sig_len, float(rec.fs), site.label_field)
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
        signals=np.asarray(rec.p_signal.T, dtype=np.float64),
        sfreq=float(rec.fs),
        ch_names=list(rec.sig_name),
        units=list(rec.units),
        annotations=annotations,
        subject=subject,
        files=files,
        comments=list(rec.comments or []),
        label_note=label_note,
    )


def _annotations(ann: wfdb.Annotation, sig_len: int, fs: float, field: str) -> list[Annotation]:
    samples = np.asarray(ann.sample, dtype=np.int64)
    if field == "symbol":
        return [Annotation(s / fs, 0.0, str(sym).strip()) for s, sym in zip(samples, ann.symbol)]
    notes = [(int(s), (n or "").replace("\x00", "").strip()) for s, n in zip(samples, ann.aux_note or [])]
    notes = [(s, n) for s, n in notes if n]
    out = []
    for i, (start, note) in enumerate(notes):
        end = notes[i + 1][0] if i + 1 < len(notes) else sig_len
        out.append(Annotation(start / fs, max(end - start, 0) / fs, note))
    return out


def discover_wfdb(site_dir: Path, site: SiteConfig) -> list[Path]:
    return sorted(p for p in site_dir.iterdir() if p.suffix == ".hea" and p.is_file())
