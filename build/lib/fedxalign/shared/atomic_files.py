"""Files replaced atomically (a temp file in the same folder, then a rename): a crash never leaves half a file."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np


def replace_atomically(path: Path, write: Callable[[str], None], suffix: str = "") -> None:
    """`write(tmp)` fills a temp file beside `path`, which then replaces `path` in one rename; the temp file never stays."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=suffix)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_npz(path: Path, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any] | None = None) -> None:
    """Arrays as an `.npz`, plus `meta` as JSON under the key 'meta' when given."""
    extra = {"meta": np.array(json.dumps(meta))} if meta is not None else {}
    replace_atomically(path, lambda tmp: np.savez(tmp, **arrays, **extra), suffix=".npz")


def write_text(path: Path, text: str, durable: bool = False) -> None:
    """`durable`: flushed to disk (fsync) before the rename, for records that must survive a power cut."""
    def write(tmp: str) -> None:
        with open(tmp, "w") as fh:
            fh.write(text)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())

    replace_atomically(path, write)
