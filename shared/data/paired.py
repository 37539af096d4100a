"""A paired site: EEG and ECG recorded together on the same subjects (a sleep lab's PSG), joined as ONE site.

The folder holds `paired.yaml` (`name`, and the sub-folders `eeg` and `ecg`, each a normal
site folder with its own `site.yaml`). Records are matched EEG to ECG by `pairs.tsv` (columns
`eeg`, `ecg`: record names) when the folder has one, else by subject and the order of each
subject's records. A matched record pair is refused when its timelines disagree: durations
more than one window apart, or the stage labels of the epochs both hold disagree on more than
`MAX_LABEL_DISAGREEMENT` of them (one record shifted against the other). Within an accepted
pair, the windows that start at the same second in both are the pairs, the site's privacy unit.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Collection

import numpy as np
import torch
import yaml

from fedxalign.shared.data.config import DataConfig, SiteConfig
from fedxalign.shared.data.site import SiteData, load_federation_site
from fedxalign.shared.data.split import split_subjects
from fedxalign.shared.errors import ConfigError, SiteError

PAIRED_FILE = "paired.yaml"
PAIRS_FILE = "pairs.tsv"
MODALITIES = ("eeg", "ecg")
MAX_LABEL_DISAGREEMENT = 0.05


@dataclass(frozen=True)
class PairedSiteConfig:
    name: str
    eeg_dir: Path
    ecg_dir: Path

    @classmethod
    def from_dir(cls, folder: str | Path) -> PairedSiteConfig:
        folder = Path(folder)
        path = folder / PAIRED_FILE
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except OSError as err:
            raise ConfigError(f"{path}: cannot read the paired site's settings ({err.strerror})") from err
        unknown = sorted(set(values) - {"name", *MODALITIES})
        if unknown or not isinstance(values.get("name"), str):
            raise ConfigError(f"{path}: needs 'name' and the sub-folders 'eeg' and 'ecg'; unknown keys {unknown}")
        dirs = {m: folder / str(values.get(m, m)) for m in MODALITIES}
        for m, d in dirs.items():
            if not (d / "site.yaml").is_file():
                raise ConfigError(f"{path}: the {m.upper()} folder {d} holds no site.yaml")
        return cls(values["name"], dirs["eeg"], dirs["ecg"])

    def write(self, folder: str | Path) -> Path:
        folder = Path(folder)
        path = folder / PAIRED_FILE
        path.write_text(yaml.safe_dump({"name": self.name, "eeg": self.eeg_dir.name, "ecg": self.ecg_dir.name}, sort_keys=False))
        return path


def is_paired_dir(folder: str | Path) -> bool:
    return (Path(folder) / PAIRED_FILE).is_file()


def paired_node_of(site_name: str, nodes: Collection[str]) -> str | None:
    """The paired node (one of `nodes`) a half belongs to: a half's site name is `<node>/<modality>`; None for a single site."""
    node = site_name.split("/")[0]
    return node if "/" in site_name and node in nodes else None


def federation_nodes(root: str | Path, paired_as_one: bool = True) -> list[Path]:
    """Every node's folder under `root`, in a stable order: a paired folder is one node (or its two
    halves, with `paired_as_one=False`); a single-modality site folder is one node."""
    root = Path(root)
    paired = sorted(p.parent for p in root.rglob(PAIRED_FILE))
    sites = sorted(p.parent for p in root.rglob("site.yaml"))
    if not paired_as_one:
        return sites
    inside = lambda s: any(s.is_relative_to(p) for p in paired)  # noqa: E731
    return sorted([s for s in sites if not inside(s)] + paired)


@dataclass
class RecordPair:
    """What the check reports per matched record pair; counts only."""

    eeg: str
    ecg: str
    subject: str
    eeg_windows: int
    ecg_windows: int
    pairs: int = 0
    refused: str = ""


@dataclass
class PairedSiteData:
    """Both halves plus the pairs: `eeg_index[i]`, `ecg_index[i]` are the windows of pair i in each half."""

    name: str
    eeg: SiteData
    ecg: SiteData
    eeg_index: np.ndarray
    ecg_index: np.ndarray
    y: np.ndarray
    subject: np.ndarray
    split: np.ndarray
    record_pairs: list[RecordPair] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)  # records with no partner in the other modality

    @property
    def vocabulary(self) -> list[str]:
        return self.eeg.vocabulary

    def dataset(self, split: str | None = None) -> PairDataset:
        mask = np.ones(len(self.y), bool) if split is None else self.split == split
        e, c = self.eeg.dataset(None), self.ecg.dataset(None)
        return PairDataset(e.x[torch.from_numpy(self.eeg_index[mask])], c.x[torch.from_numpy(self.ecg_index[mask])],
                           self.y[mask], self.subject[mask])

    def max_pairs_per_subject(self) -> int:
        return int(np.unique(self.subject.astype(str), return_counts=True)[1].max()) if len(self.subject) else 0


class PairDataset(torch.utils.data.Dataset):
    """(EEG window, ECG window, label) of one 30-s epoch: the unit DP-SGD samples and clips at a paired site."""

    def __init__(self, x_eeg: torch.Tensor, x_ecg: torch.Tensor, y: np.ndarray, subject: np.ndarray) -> None:
        self.x_eeg, self.x_ecg = x_eeg, x_ecg
        self.y = torch.from_numpy(np.asarray(y, np.int64))
        self.subject = subject

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.x_eeg[i], self.x_ecg[i], self.y[i]


def pairs_table(folder: Path) -> list[tuple[str, str]] | None:
    path = folder / PAIRS_FILE
    if not path.is_file():
        return None
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    if rows and not {"eeg", "ecg"} <= set(rows[0]):
        raise SiteError(folder, f"{PAIRS_FILE} needs the columns 'eeg' and 'ecg', got {list(rows[0])}")
    return [(r["eeg"], r["ecg"]) for r in rows]


def match_records(eeg: SiteData, ecg: SiteData, table: list[tuple[str, str]] | None) -> tuple[list[tuple[str, str]], list[str]]:
    """(EEG record, ECG record) pairs and the records left without a partner."""
    e_names, c_names = [r.name for r in eeg.records], [r.name for r in ecg.records]
    if table is not None:
        pairs = [(e, c) for e, c in table if e in e_names and c in c_names]
    else:
        by_subject: dict[str, tuple[list[str], list[str]]] = {}
        for r in eeg.records:
            by_subject.setdefault(r.subject, ([], []))[0].append(r.name)
        for r in ecg.records:
            by_subject.setdefault(r.subject, ([], []))[1].append(r.name)
        pairs = [(e, c) for es, cs in by_subject.values() for e, c in zip(sorted(es), sorted(cs))]
    used = {n for p in pairs for n in p}
    return pairs, [n for n in e_names + c_names if n not in used]


def pair_site(name: str, eeg: SiteData, ecg: SiteData, table: list[tuple[str, str]] | None = None,
              split_seed: int = 0, val_frac: float = 0.15, test_frac: float = 0.15) -> PairedSiteData:
    """Match records, check each pair's timelines, and pair the windows that start at the same second in both."""
    window_s = eeg.preprocess.window_s
    info_e, info_c = {r.name: r for r in eeg.records}, {r.name: r for r in ecg.records}
    matched, unmatched = match_records(eeg, ecg, table)
    ie, ic, reports = [], [], []
    for e_name, c_name in matched:
        we, wc = np.flatnonzero(eeg.record == e_name), np.flatnonzero(ecg.record == c_name)
        rep = RecordPair(e_name, c_name, info_e[e_name].subject, len(we), len(wc))
        reports.append(rep)
        if info_e[e_name].subject != info_c[c_name].subject:
            rep.refused = f"subjects differ ({info_e[e_name].subject!r} vs {info_c[c_name].subject!r})"
            continue
        de, dc = info_e[e_name].duration_s, info_c[c_name].duration_s
        if abs(de - dc) > window_s:
            rep.refused = f"timelines disagree: EEG lasts {de:.0f} s, ECG {dc:.0f} s"
            continue
        on_e = {int(round(t)): i for t, i in zip(eeg.onsets[we], we)}
        on_c = {int(round(t)): i for t, i in zip(ecg.onsets[wc], wc)}
        shared = sorted(set(on_e) & set(on_c))
        if not shared:
            rep.refused = "no epoch starts at the same second in both records"
            continue
        ke, kc = np.array([on_e[t] for t in shared]), np.array([on_c[t] for t in shared])
        disagree = float(np.mean(eeg.y[ke] != ecg.y[kc]))
        if disagree > MAX_LABEL_DISAGREEMENT:
            rep.refused = (f"timelines disagree: the two records' stages differ on {disagree:.0%} of the epochs both hold "
                           "(one is shifted against the other?)")
            continue
        same = eeg.y[ke] == ecg.y[kc]  # an epoch scored differently in the two files is no pair
        ie.append(ke[same])
        ic.append(kc[same])
        rep.pairs = int(same.sum())
    eeg_index = np.concatenate(ie) if ie else np.zeros(0, np.int64)
    ecg_index = np.concatenate(ic) if ic else np.zeros(0, np.int64)
    subject = eeg.subject[eeg_index].astype(str) if len(eeg_index) else np.zeros(0, str)
    assignment = split_subjects(subject.tolist(), val_frac, test_frac, split_seed)
    return PairedSiteData(name, eeg, ecg, eeg_index, ecg_index, eeg.y[eeg_index], subject,
                          np.array([assignment[s] for s in subject], dtype=object), reports, unmatched)


def load_paired_site(folder: str | Path, data: DataConfig, cache_dir: str | Path | None = None,
                     progress: bool = False) -> PairedSiteData:
    """Both halves through the normal site loader (cache included), then the pairs; SiteError when none pair."""
    folder = Path(folder)
    cfg = PairedSiteConfig.from_dir(folder)
    halves = {m: load_federation_site(d, SiteConfig.from_site_dir(d), data, cache_dir, progress)
              for m, d in (("eeg", cfg.eeg_dir), ("ecg", cfg.ecg_dir))}
    for m, half in halves.items():
        if half.site.modality != m:
            raise SiteError(folder, f"the {m.upper()} folder's site.yaml says modality {half.site.modality!r}")
    paired = pair_site(cfg.name, halves["eeg"], halves["ecg"], pairs_table(folder), data.split.seed,
                       data.split.val_frac, data.split.test_frac)
    if not len(paired.y):
        why = "; ".join(f"{r.eeg}/{r.ecg}: {r.refused}" for r in paired.record_pairs if r.refused)[:500]
        raise SiteError(folder, f"no EEG/ECG pair of epochs ({why or 'no record has a partner'})")
    return paired
