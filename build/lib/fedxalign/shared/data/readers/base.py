"""What every reader returns: a record's signals in physical units plus its annotations."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


# electrical units and their factor to volts; any other unit (degC, %, mmHg) is not a potential
VOLT_SCALE = {"v": 1.0, "mv": 1e-3, "uv": 1e-6, "\u00b5v": 1e-6, "\u03bcv": 1e-6, "nv": 1e-9}


def is_electrical(unit: str) -> bool:
    return unit.strip().lower() in VOLT_SCALE


@dataclass(frozen=True)
class Annotation:
    """A labelled span (`duration` > 0) or a point event (`duration` == 0), in seconds from record start."""

    onset: float
    duration: float
    label: str


@dataclass
class RawRecord:
    """One recording as read from disk, before any preprocessing.

    `signals` has shape (n_channels, n_samples) at `sfreq`, in the unit named per channel in
    `units`; a channel recorded at a lower rate (multi-rate EDF, multi-frequency WFDB) has been
    brought up to `sfreq` and keeps its own rate in `channel_sfreqs`.
    `files` lists every file the record was read from (header, signal files, annotations).
    """

    name: str
    path: Path
    signals: np.ndarray
    sfreq: float
    ch_names: list[str]
    units: list[str]
    annotations: list[Annotation]
    subject: str | None = None
    files: list[Path] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    label_note: str = ""  # why there are no annotations, naming the file looked for (empty when they were read)
    channel_sfreqs: list[float] | None = None  # each channel's own rate when it differs from `sfreq` (upsampled on read)

    def channel_rate(self, name: str) -> float:
        """The rate a channel was recorded at, whatever rate it was brought to on reading."""
        if self.channel_sfreqs is None:
            return self.sfreq
        return dict(zip(self.ch_names, self.channel_sfreqs)).get(name, self.sfreq)

    @property
    def duration_s(self) -> float:
        return self.signals.shape[1] / self.sfreq
