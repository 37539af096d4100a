"""One round at a time in a site's state folder.

A second train message while one runs (a resumed coordinator re-sending a round, two runs at
once, or a coordinator that sends two on purpose) waits for the first: otherwise both
processes would read the same ledger, each add its own spending, and the last write would drop
the other's, so the site would under-count what it spent.
"""

from __future__ import annotations

import fcntl
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

LOCK_FILE = ".round.lock"


@contextmanager
def exclusive(folder: Path) -> Iterator[None]:
    """Hold the folder's lock (an advisory flock, released by the OS if the process dies) for the block."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_FILE, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
