"""What every reader returns: a record's signals in physical units plus its annotations."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Annotation:
    """A labelled span (`duration` > 0) or a point event (`duration` == 0), in seconds from record start."""

    onset: float
    duration: float
    label: str


@dataclass
class RawRecord:
    """One recording as read from disk, before any preprocessing.

    `signals` has shape (n_channels, n_samples) in the unit named per channel in `units`.
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

    @property
    def duration_s(self) -> float:
        return self.signals.shape[1] / self.sfreq
