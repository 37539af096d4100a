"""On-disk cache of preprocessed record windows, valid while the source files are unchanged."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from fedxalign.shared.atomic_files import write_npz

log = logging.getLogger(__name__)


def file_stamp(paths: list[Path]) -> list[list]:
    return [[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in paths]


def load(path: Path) -> dict | None:
    """The cached entry, or None when absent, unreadable or stale (a source file changed)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(str(npz["meta"]))
            stamp = meta["files"]
            if any(not Path(p).is_file() or file_stamp([Path(p)])[0] != [p, s, m] for p, s, m in stamp):
                return None
            return {"x": npz["x"], "y": npz["y"], "onsets": npz["onsets"], "meta": meta}
    except (OSError, ValueError, KeyError) as err:
        log.warning("ignoring unreadable cache entry %s (%s)", path, err)
        return None


def save(path: Path, x: np.ndarray, y: np.ndarray, onsets: np.ndarray, meta: dict) -> None:
    """Written atomically, so an interrupted run never leaves a half entry."""
    write_npz(path, {"x": x, "y": y, "onsets": onsets}, meta)
