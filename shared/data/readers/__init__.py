"""Readers by format: a registry from the site's `format` to its discover/read functions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from fedxalign.shared.data.config import FORMATS, SiteConfig
from fedxalign.shared.data.readers.base import Annotation, RawRecord
from fedxalign.shared.data.readers.edf import discover_edf_like, read_edf_like
from fedxalign.shared.data.readers.wfdb_reader import discover_wfdb, read_wfdb
from fedxalign.shared.errors import check_option


@dataclass(frozen=True)
class Reader:
    discover: Callable[[Path, SiteConfig], list[Path]]
    read: Callable[[Path, SiteConfig], RawRecord]


READERS: dict[str, Reader] = {
    "edf": Reader(discover_edf_like, read_edf_like),
    "bdf": Reader(discover_edf_like, read_edf_like),
    "wfdb": Reader(discover_wfdb, read_wfdb),
}
assert set(READERS) == set(FORMATS)


def get_reader(fmt: str) -> Reader:
    check_option("format", fmt, tuple(READERS))
    return READERS[fmt]


__all__ = ["Annotation", "RawRecord", "Reader", "READERS", "get_reader"]
