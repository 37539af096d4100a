"""Load a whole site folder into labelled windows, skipping and reporting bad records."""

from __future__ import annotations

import csv
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from fedxalign.shared.data import cache
from fedxalign.shared.data.config import DataConfig, PreprocessConfig, SiteConfig, fingerprint
from fedxalign.shared.data.preprocess import preprocess_record
from fedxalign.shared.data.readers import get_reader
from fedxalign.shared.data.split import split_subjects
from fedxalign.shared.errors import RecordError, SiteError

log = logging.getLogger(__name__)

RECORDS_FILE = "records.tsv"
CACHE_VERSION = 6  # 2: label_note; 3: units and own rates per channel; 4: invalid samples mended, counted; 5: per channel; 6: beat channels


@dataclass
class RecordInfo:
    """What the site check reports per record; holds no signal samples."""

    name: str
    subject: str
    sfreq: float
    ch_names: list[str]
    duration_s: float
    n_windows: int
    files: list[str]
    units: list[str] = field(default_factory=list)  # per picked channel
    rates: list[float] = field(default_factory=list)  # per picked channel, its own rate
    invalid: list[int] = field(default_factory=list)  # per picked channel, invalid samples
    invalid_windows: int = 0  # labelled windows lost to invalid samples
    invalid_windows_per_channel: list[int] = field(default_factory=list)


@dataclass
class SiteData:
    """All labelled windows of a site plus per-window metadata and what was skipped.

    `x`: (n, channels, window samples) float32; `y`: (n,) index into `vocabulary`;
    `record`, `subject`, `split`: (n,) strings; `onsets`: (n,) seconds from record start.
    """

    site: SiteConfig
    preprocess: PreprocessConfig
    vocabulary: list[str]
    x: np.ndarray
    y: np.ndarray
    record: np.ndarray
    subject: np.ndarray
    onsets: np.ndarray
    split: np.ndarray
    ch_names: list[str]
    records: list[RecordInfo] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    unmapped: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)
    cache_hits: int = 0

    def class_counts(self, split: str | None = None) -> dict[str, int]:
        y = self.y if split is None else self.y[self.split == split]
        counts = np.bincount(y, minlength=len(self.vocabulary))
        return {name: int(c) for name, c in zip(self.vocabulary, counts)}

    def max_windows_per_subject(self, split: str | None = None) -> int:
        """The most windows one subject contributes: the group size that window-level privacy leaves a patient."""
        subjects = self.subject if split is None else self.subject[self.split == split]
        return int(np.unique(np.asarray(subjects).astype(str), return_counts=True)[1].max()) if len(subjects) else 0

    def dataset(self, split: str | None = None) -> WindowDataset:
        mask = np.ones(len(self.y), bool) if split is None else self.split == split
        return WindowDataset(self.x[mask], self.y[mask], self.preprocess.n_patches, self.preprocess.patch_samples,
                             site=self.site.name, record=self.record[mask], subject=self.subject[mask], onsets=self.onsets[mask])


class WindowDataset(torch.utils.data.Dataset):
    """(window, label) pairs; a window is (channels, patches, patch samples), as the encoders take it.

    Per-window metadata (`site`, `record`, `subject`, `onsets`) stays on the dataset, at the site.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, n_patches: int, patch_samples: int, site: str = "",
                 record: np.ndarray | None = None, subject: np.ndarray | None = None, onsets: np.ndarray | None = None) -> None:
        self.x = torch.from_numpy(np.ascontiguousarray(x)).reshape(len(x), x.shape[1], n_patches, patch_samples)
        self.y = torch.from_numpy(y.astype(np.int64))
        self.site = site
        self.record = record if record is not None else np.full(len(y), "", dtype=object)
        self.subject = subject if subject is not None else np.full(len(y), "", dtype=object)
        self.onsets = onsets if onsets is not None else np.zeros(len(y))

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]


def load_federation_site(site_dir: str | Path, site: SiteConfig, data: DataConfig, cache_dir: str | Path | None = None,
                         progress: bool = False) -> SiteData:
    """`load_site` with the federation's vocabulary, preprocessing for the site's modality and subject split."""
    return load_site(site_dir, site, data.preprocess[site.modality], data.vocabulary, cache_dir=cache_dir,
                     split_seed=data.split.seed, val_frac=data.split.val_frac, test_frac=data.split.test_frac, progress=progress)


def federation_sites(root: str | Path) -> list[Path]:
    """Every site folder (one holding a `site.yaml`) under `root`, in a stable order."""
    return sorted(p.parent for p in Path(root).rglob("site.yaml"))


def read_subject_table(site_dir: Path) -> dict[str, str]:
    """Optional `records.tsv` (columns `record`, `subject`) that maps records to subjects."""
    path = site_dir / RECORDS_FILE
    if not path.is_file():
        return {}
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    if rows and not {"record", "subject"} <= set(rows[0]):
        raise SiteError(site_dir, f"{path.name} needs the columns 'record' and 'subject', got {list(rows[0])}")
    return {r["record"]: r["subject"] for r in rows}


def resolve_subject(name: str, from_header: str | None, table: dict[str, str], regex: str | None) -> str:
    """records.tsv, then the site's subject_regex, then the file header, then the record name."""
    if name in table:
        return table[name]
    if regex:
        m = re.search(regex, name)
        if m:
            return m.group(1) if m.groups() else m.group(0)
    return from_header or name


def load_site(
    site_dir: str | Path,
    site: SiteConfig,
    preprocess: PreprocessConfig,
    vocabulary: Sequence[str],
    cache_dir: str | Path | None = None,
    split_seed: int = 0,
    val_frac: float = 0.15,
    test_frac: float = 0.15,
    progress: bool = True,
) -> SiteData:
    """Read every record of `site_dir`; a bad record is skipped and reported, the rest still load.

    Raises SiteError when no record yields a labelled window. Never writes inside `site_dir`;
    preprocessed windows are cached under `cache_dir` when one is given.
    """
    site_dir = Path(site_dir)
    if not site_dir.is_dir():
        raise SiteError(site_dir, "folder does not exist")
    reader = get_reader(site.format)
    paths = reader.discover(site_dir, site)
    if not paths:
        raise SiteError(site_dir, f"no {site.format} record found (looked for {'*.hea' if site.format == 'wfdb' else '*.' + site.format})")
    table = read_subject_table(site_dir)
    key = fingerprint(CACHE_VERSION, site.to_dict() | {"name": ""}, preprocess, list(vocabulary))
    parts: list[dict] = []
    skipped: list[tuple[str, str]] = []
    unmapped: Counter = Counter()
    dropped: Counter = Counter()
    hits = 0
    ch_ref: list[str] | None = None
    for path in tqdm(paths, desc=f"reading {site.name}", unit="record", disable=not progress, leave=False):
        # the record's own path is in the key: two federations with the same site and record names
        # (generated with another seed, or a copy) must never read each other's windows
        entry_path = Path(cache_dir) / site.name / f"{path.name}-{fingerprint(key, str(path.resolve()))}.npz" if cache_dir else None
        entry = cache.load(entry_path) if entry_path else None
        if entry is not None:
            hits += 1
        else:
            try:
                raw = reader.read(path, site)
                win = preprocess_record(raw, site, preprocess, vocabulary)
            except RecordError as err:
                log.warning("skipping %s", err)
                skipped.append((str(err.path), err.reason))
                continue
            meta = {
                "files": cache.file_stamp(raw.files),
                "info": RecordInfo(raw.name, raw.subject or "", raw.sfreq, win.ch_names, raw.duration_s, len(win.y),
                                   [str(f) for f in raw.files], win.units, win.rates, win.invalid, win.invalid_windows,
                                   win.invalid_windows_per_channel).__dict__,
                "unmapped": dict(win.unmapped),
                "dropped": dict(win.dropped),
                "label_note": raw.label_note,
            }
            entry = {"x": win.x, "y": win.y, "onsets": win.onsets, "meta": meta}
            if entry_path:
                cache.save(entry_path, win.x, win.y, win.onsets, meta)
        info = RecordInfo(**entry["meta"]["info"])
        unmapped.update(entry["meta"]["unmapped"])  # names seen anywhere, to diagnose a label map
        if ch_ref is None:
            ch_ref = info.ch_names
        elif len(info.ch_names) != len(ch_ref) or (not site.channels and info.ch_names != ch_ref):
            skipped.append((str(path), f"channels {info.ch_names} differ from the site's {ch_ref}; set 'channels' in the site config"))
            continue
        if info.n_windows == 0:
            seen = sorted(entry["meta"]["unmapped"]) or "none"
            note = entry["meta"].get("label_note") or ""
            skipped.append((str(path), f"no window carries a mapped label ({note or f'annotations seen: {seen}'})"))
            continue
        dropped.update(entry["meta"]["dropped"])
        info.subject = resolve_subject(info.name, info.subject or None, table, site.subject_regex)
        parts.append({"info": info, **entry})
    if not parts:
        seen = sorted(unmapped)
        if seen and not any(r for r in skipped if "no window" not in r[1]):
            raise SiteError(site_dir, f"the label map maps none of the annotation names found ({seen[:20]}); "
                                      f"label_map keys: {sorted(site.label_map)}", skipped)
        reasons = "; ".join(f"{Path(p).name}: {r}" for p, r in skipped[:10])
        raise SiteError(site_dir, f"no usable record ({len(skipped)} skipped: {reasons})", skipped)
    infos = [p["info"] for p in parts]
    assignment = split_subjects([i.subject for i in infos], val_frac, test_frac, split_seed)
    n_per = [len(p["y"]) for p in parts]
    return SiteData(
        site=site,
        preprocess=preprocess,
        vocabulary=list(vocabulary),
        x=np.concatenate([p["x"] for p in parts]),
        y=np.concatenate([p["y"] for p in parts]).astype(np.int64),
        record=np.repeat([i.name for i in infos], n_per),
        subject=np.repeat([i.subject for i in infos], n_per),
        onsets=np.concatenate([p["onsets"] for p in parts]),
        split=np.repeat([assignment[i.subject] for i in infos], n_per),
        ch_names=list(ch_ref or []),
        records=infos,
        skipped=skipped,
        unmapped=unmapped,
        dropped=dropped,
        cache_hits=hits,
    )
