"""EDF/EDF+/BDF records through MNE, with a header sanity check MNE does not make fatal."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import mne
import numpy as np

from fedxalign.shared.data.config import SiteConfig
from fedxalign.shared.data.readers.base import VOLT_SCALE, Annotation, RawRecord, is_electrical
from fedxalign.shared.errors import RecordError

log = logging.getLogger(__name__)

_HEADER_BYTES = 256


@dataclass(frozen=True)
class EdfHeader:
    """Per-signal fields of an EDF/BDF header that MNE does not expose: label, own sampling rate, physical unit."""

    labels: list[str]
    rates: list[float]
    units: list[str]
    physical: list[tuple[float, float]]  # (min, max) per signal, in its header unit
    digital: list[tuple[int, int]]  # (min, max) per signal

    def extremes(self, label: str) -> tuple[float, float, float] | None:
        """(physical min, physical max, one digital step) of a signal, in its header unit; None when unknown."""
        if label not in self.labels:
            return None
        i = self.labels.index(label)
        (pmin, pmax), (dmin, dmax) = self.physical[i], self.digital[i]
        return (pmin, pmax, (pmax - pmin) / (dmax - dmin)) if dmax > dmin else None

    def signal_rates(self) -> dict[str, float]:
        """Rate per signal label, annotation channels left out (MNE leaves them out too)."""
        return {lab: r for lab, r in zip(self.labels, self.rates) if lab not in ANNOTATION_LABELS}


ANNOTATION_LABELS = ("EDF Annotations", "BDF Annotations")


def channel_unit(header_unit: str) -> str:
    """The unit of a channel as MNE hands it over: volts for any electrical dimension, else the header's own text."""
    return "V" if is_electrical(header_unit) else (header_unit.strip() or "(none)")  # MNE scales electrical units to volts


def check_edf_header(path: Path, bytes_per_sample: int) -> EdfHeader:
    """Raise RecordError when the fixed header is unreadable or disagrees with the file size; else the per-signal fields.

    MNE only warns when the declared number of data records does not fit the file, and then
    reads a shorter or padded signal; for a federation that is silent data loss, so it is an
    error here (EDF spec section 2.1.1: header 256 + 256 x ns bytes, then n_records records).
    """
    size = path.stat().st_size
    if size < _HEADER_BYTES:
        raise RecordError(path, f"file is {size} bytes, shorter than the {_HEADER_BYTES}-byte EDF header (truncated?)")
    with path.open("rb") as fh:
        head = fh.read(_HEADER_BYTES)
        try:
            n_records = int(head[236:244].decode("ascii").strip())
            n_signals = int(head[252:256].decode("ascii").strip())
        except ValueError as err:
            raise RecordError(path, f"header fields 'number of data records'/'number of signals' are not integers ({err})") from err
        if n_signals <= 0:
            raise RecordError(path, f"header declares {n_signals} signals")
        header_len = _HEADER_BYTES * (n_signals + 1)
        if size < header_len:
            raise RecordError(path, f"file is {size} bytes but its header alone declares {header_len} bytes (truncated header)")
        signal_header = fh.read(_HEADER_BYTES * n_signals).decode("latin-1")
    field = lambda offset, width, i: signal_header[n_signals * offset + width * i: n_signals * offset + width * (i + 1)].strip()  # noqa: E731
    try:
        counts = [int(field(216, 8, i)) for i in range(n_signals)]
    except ValueError as err:
        raise RecordError(path, f"header field 'number of samples in each data record' is not an integer ({err})") from err
    try:
        record_s = float(head[244:252].decode("ascii").strip())
    except ValueError:
        record_s = 0.0
    def number(offset: int, i: int, kind: type = float):
        try:
            return kind(float(field(offset, 8, i)))
        except ValueError:
            return kind(0)

    header = EdfHeader(labels=[field(0, 16, i) for i in range(n_signals)],
                       rates=[c / record_s if record_s > 0 else 0.0 for c in counts],
                       units=[field(96, 8, i) for i in range(n_signals)],
                       physical=[(number(104, i), number(112, i)) for i in range(n_signals)],
                       digital=[(number(120, i, int), number(128, i, int)) for i in range(n_signals)])
    per_record = sum(counts)
    if n_records < 0:  # -1: still being recorded; the spec allows it, nothing to compare
        return header
    expected = header_len + n_records * per_record * bytes_per_sample
    if size != expected:
        actual_records = (size - header_len) / max(per_record * bytes_per_sample, 1)
        raise RecordError(
            path,
            f"header declares {n_records} data records ({expected} bytes in all) but the file holds "
            f"{size} bytes, i.e. {actual_records:.2f} records: truncated file or lying header",
        )
    return header


def mark_digital_extremes(data: np.ndarray, names: list[str], header: EdfHeader) -> None:
    """Set to NaN, in place, samples at a channel's digital minimum or maximum: clipped or gap-filled, not measured."""
    for c, name in enumerate(names):
        ext = header.extremes(name)
        if ext is None:
            continue
        i = header.labels.index(name)
        scale = VOLT_SCALE.get(header.units[i].strip().lower(), 1.0)  # MNE hands electrical channels over in volts
        lo, hi, step = (v * scale for v in ext)
        at_edge = (np.abs(data[c] - lo) < 0.5 * abs(step)) | (np.abs(data[c] - hi) < 0.5 * abs(step))
        data[c, at_edge] = np.nan


def _annotations_from_mne(annot: mne.Annotations) -> list[Annotation]:
    return [Annotation(float(o), float(d), str(t).strip()) for o, d, t in zip(annot.onset, annot.duration, annot.description)]


def find_hypnogram(path: Path, suffix: str) -> Path | None:
    """The separate annotation file of a Sleep-EDF-style record (`SC4001E0-PSG.edf` -> `SC4001EC-Hypnogram.edf`).

    Exact `<stem><suffix>` first (stem without a trailing `-PSG`), else the single file that
    shares the stem minus its last character, as Sleep-EDF names them.
    """
    stem = path.stem[:-4] if path.stem.endswith("-PSG") else path.stem
    exact = path.with_name(stem + suffix)
    if exact.is_file():
        return exact
    candidates = sorted(p for p in path.parent.glob(stem[:-1] + "*" + suffix) if p != path)
    return candidates[0] if len(candidates) == 1 else None


def read_edf_like(path: Path, site: SiteConfig) -> RawRecord:
    """Read an EDF(+)/BDF(+) record and its labels (embedded or from a hypnogram file)."""
    is_bdf = site.format == "bdf"
    header = check_edf_header(path, 3 if is_bdf else 2)
    reader = mne.io.read_raw_bdf if is_bdf else mne.io.read_raw_edf
    try:
        raw = reader(path, preload=True, verbose="error")
    except Exception as err:  # MNE raises ValueError/RuntimeError/OSError for bad files
        raise RecordError(path, f"MNE could not read it: {type(err).__name__}: {err}") from err
    if len(raw.ch_names) == 0:
        raise RecordError(path, "holds no signal channels (annotation-only file: a hypnogram?)")
    files = [path]
    annotations = _annotations_from_mne(raw.annotations)
    if site.label_source == "hypnogram":
        hyp = find_hypnogram(path, site.hypnogram_suffix)
        if hyp is None:
            stem = path.stem[:-4] if path.stem.endswith("-PSG") else path.stem
            raise RecordError(path, f"hypnogram file {stem}{site.hypnogram_suffix} (or {stem[:-1]}?{site.hypnogram_suffix}) "
                                    f"not found in {path.parent}")
        check_edf_header(hyp, 2)
        try:
            annotations = _annotations_from_mne(mne.read_annotations(hyp))
        except Exception as err:
            raise RecordError(hyp, f"could not read annotations: {type(err).__name__}: {err}") from err
        files.append(hyp)
    # MNE scales every physical dimension (uV, mV, ...) to SI volts; keep SI so gains compare.
    data = raw.get_data()
    # MNE brings every channel to the file's highest rate; each channel's own rate comes from the header
    own = header.signal_rates()
    rates = [own.get(name, float(raw.info["sfreq"])) for name in raw.ch_names]
    unit_of = {lab: channel_unit(u) for lab, u in zip(header.labels, header.units)}
    mark_digital_extremes(data, list(raw.ch_names), header)
    subject_info = raw.info.get("subject_info") or {}
    subject = subject_info.get("his_id") or None
    if subject in ("X", ""):
        subject = None
    return RawRecord(
        name=path.stem[:-4] if path.stem.endswith("-PSG") else path.stem,
        path=path,
        signals=np.asarray(data, dtype=np.float64),
        sfreq=float(raw.info["sfreq"]),
        channel_sfreqs=rates if any(abs(r - float(raw.info["sfreq"])) > 1e-6 for r in rates) else None,
        ch_names=list(raw.ch_names),
        units=[unit_of.get(name, "V") for name in raw.ch_names],
        annotations=annotations,
        subject=subject,
        files=files,
        label_note="" if annotations else (
            "the file holds no EDF+ annotations (label_source: embedded)" if site.label_source == "embedded"
            else f"{files[-1].name} holds no annotations"),
    )


def discover_edf_like(site_dir: Path, site: SiteConfig) -> list[Path]:
    ext = ".bdf" if site.format == "bdf" else ".edf"
    found = sorted(p for p in site_dir.iterdir() if p.suffix.lower() == ext and p.is_file())
    if site.label_source == "hypnogram":
        found = [p for p in found if not p.name.endswith(site.hypnogram_suffix)]
    return found
