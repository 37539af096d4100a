"""A site's pre-flight report: what its folder holds and whether the federation can use it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from fedxalign.shared.data.config import DataConfig, PreprocessConfig, SiteConfig
from fedxalign.shared.data.site import SiteData, load_site
from fedxalign.shared.data.split import SPLITS
from fedxalign.shared.errors import SiteError
from fedxalign.shared.privacy.policy import SitePolicy, describe_unit


@dataclass
class SiteReport:
    """Counts only; nothing in it can reconstruct a signal."""

    site: SiteConfig
    site_dir: Path
    usable: bool
    problem: str = ""
    n_records: int = 0
    subjects: list[str] = field(default_factory=list)
    channels: list[str] = field(default_factory=list)
    sampling_rates: list[float] = field(default_factory=list)
    durations_s: list[float] = field(default_factory=list)
    windows: dict[str, dict[str, int]] = field(default_factory=dict)
    unmapped: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    max_windows_per_subject: int = 0
    privacy: str = ""
    channel_units: dict[str, list[str]] = field(default_factory=dict)  # per picked channel, over all records
    channel_rates: dict[str, list[float]] = field(default_factory=dict)  # per picked channel, its own rates
    channel_invalid: dict[str, int] = field(default_factory=dict)  # per picked channel, invalid samples over all records
    invalid_windows: int = 0  # labelled windows lost to invalid samples
    channel_invalid_windows: dict[str, int] = field(default_factory=dict)  # per picked channel, windows its invalid samples touch

    def to_dict(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if k not in ("site", "site_dir")}
        out["site"] = self.site.name
        out["site_dir"] = str(self.site_dir)
        return out


def check_site(site_dir: str | Path, site: SiteConfig, preprocess: PreprocessConfig, vocabulary: Sequence[str],
               min_windows_per_label: int = 1, progress: bool = True, policy: SitePolicy | None = None) -> SiteReport:
    """Read every record of the site (no cache, nothing written) and summarise it, with what its privacy policy means per patient."""
    return _checked(site_dir, site, preprocess, vocabulary, min_windows_per_label, progress, policy)[0]


def _checked(site_dir: str | Path, site: SiteConfig, preprocess: PreprocessConfig, vocabulary: Sequence[str],
             min_windows_per_label: int, progress: bool, policy: SitePolicy | None) -> tuple[SiteReport, SiteData | None]:
    """The report and the data it was made from (None when the site is unusable), so a paired check reads each half once."""
    site_dir = Path(site_dir)
    try:
        data = load_site(site_dir, site, preprocess, vocabulary, cache_dir=None, progress=progress)
    except SiteError as err:
        return SiteReport(site=site, site_dir=site_dir, usable=False, problem=err.reason, skipped=list(err.skipped)), None
    return _report(data, site_dir, min_windows_per_label, policy), data


def _report(data: SiteData, site_dir: Path, min_windows_per_label: int, policy: SitePolicy | None) -> SiteReport:
    site = data.site
    windows = {s: data.class_counts(s) for s in SPLITS}
    windows["all"] = data.class_counts()
    report = SiteReport(
        site=site, site_dir=site_dir, usable=True, n_records=len(data.records),
        subjects=sorted({r.subject for r in data.records}), channels=data.ch_names,
        sampling_rates=sorted({r.sfreq for r in data.records}), durations_s=[r.duration_s for r in data.records],
        windows=windows, unmapped=dict(data.unmapped), dropped=dict(data.dropped), skipped=data.skipped,
    )
    for rec in data.records:
        for i, name in enumerate(rec.ch_names):
            if i < len(rec.units) and rec.units[i] not in report.channel_units.setdefault(name, []):
                report.channel_units[name].append(rec.units[i])
            if i < len(rec.rates) and rec.rates[i] not in report.channel_rates.setdefault(name, []):
                report.channel_rates[name].append(rec.rates[i])
            report.channel_invalid[name] = report.channel_invalid.get(name, 0) + (rec.invalid[i] if i < len(rec.invalid) else 0)
            lost = rec.invalid_windows_per_channel[i] if i < len(rec.invalid_windows_per_channel) else 0
            report.channel_invalid_windows[name] = report.channel_invalid_windows.get(name, 0) + lost
        report.invalid_windows += rec.invalid_windows
    report.max_windows_per_subject = data.max_windows_per_subject()
    policy = policy or SitePolicy()
    report.privacy = describe_unit(policy.epsilon, policy.delta, policy.unit, report.max_windows_per_subject)
    empty = [k for k, v in windows["all"].items() if v < min_windows_per_label]
    if empty:
        report.warnings.append(f"labels with fewer than {min_windows_per_label} window(s): {empty}")
    if not windows["test"] or sum(windows["test"].values()) == 0:
        report.warnings.append("no held-out test subject: the site needs at least two subjects to be evaluated")
    return report


def format_report(r: SiteReport) -> str:
    lines = [f"site {r.site.name!r} ({r.site.modality}, {r.site.format}) at {r.site_dir}"]
    if not r.usable:
        lines += [f"UNUSABLE: {r.problem}"]
    else:
        d = np.asarray(r.durations_s)
        lines += [
            f"records     {r.n_records} read, {len(r.skipped)} skipped",
            f"subjects    {len(r.subjects)}",
            f"channels    {', '.join(r.channels)}",
            *[f"  {n}: {'/'.join(f'{f:g}' for f in r.channel_rates.get(n, []))} Hz as recorded, unit "
              f"{'/'.join(r.channel_units.get(n, [])) or '?'}, {r.channel_invalid.get(n, 0)} invalid samples costing "
              f"{r.channel_invalid_windows.get(n, 0)} window(s)" for n in r.channels],
            f"invalid     {r.invalid_windows} labelled window(s) dropped in all because they touch an invalid sample",
            f"rates       {', '.join(f'{f:g} Hz' for f in r.sampling_rates)}",
            f"duration    {d.sum() / 3600:.2f} h in all, {d.min() / 60:.1f}-{d.max() / 60:.1f} min per record",
            f"privacy     {r.privacy.removeprefix('privacy ')}",
            "windows per shared label:",
            "  " + f"{'label':8s}" + "".join(f"{s:>8s}" for s in (*SPLITS, "all")),
        ]
        for label in r.windows["all"]:
            lines.append("  " + f"{label:8s}" + "".join(f"{r.windows[s][label]:8d}" for s in (*SPLITS, "all")))
        if r.unmapped:
            lines.append("unmapped annotation names (dropped): " + ", ".join(f"{k!r} x{v}" for k, v in sorted(r.unmapped.items())))
        if r.dropped:
            lines.append("windows without a usable label: " + ", ".join(f"{k} {v}" for k, v in sorted(r.dropped.items())))
    if r.skipped:
        lines.append("skipped files:")
        lines += [f"  {p}: {why}" for p, why in r.skipped]
    lines += [f"warning: {w}" for w in r.warnings]
    lines.append(f"status      {'OK' if r.usable else 'UNUSABLE'} (this check read local files only and sent nothing)")
    return "\n".join(lines)


@dataclass
class PairedReport:
    """A paired site's check: each half's own report, and which record pairs pair how many epochs (counts only)."""

    name: str
    folder: Path
    halves: dict[str, SiteReport]
    usable: bool
    problem: str = ""
    record_pairs: list = field(default_factory=list)  # shared.data.paired.RecordPair
    unmatched: list[str] = field(default_factory=list)
    pairs: dict[str, int] = field(default_factory=dict)  # per split and "all"
    max_pairs_per_subject: int = 0

    def to_dict(self) -> dict:
        return {"site": self.name, "site_dir": str(self.folder), "usable": self.usable, "problem": self.problem,
                "halves": {m: r.to_dict() for m, r in self.halves.items()},
                "record_pairs": [r.__dict__ for r in self.record_pairs], "unmatched": self.unmatched, "pairs": self.pairs,
                "max_pairs_per_subject": self.max_pairs_per_subject}


def check_paired_site(folder: str | Path, data: DataConfig, progress: bool = True, policy: SitePolicy | None = None) -> PairedReport:
    """Check each half as a site, then pair them: how many epochs hold both modalities, and which record pairs are refused."""
    from fedxalign.shared.data.paired import PairedSiteConfig, pair_site, pairs_table

    folder = Path(folder)
    cfg = PairedSiteConfig.from_dir(folder)
    halves, loaded = {}, {}
    for m, d in (("eeg", cfg.eeg_dir), ("ecg", cfg.ecg_dir)):
        site = SiteConfig.from_site_dir(d)
        halves[m], loaded[m] = _checked(d, site, data.preprocess[site.modality], data.vocabulary, 1, progress, policy)
    report = PairedReport(cfg.name, folder, halves, usable=all(r.usable for r in halves.values()))
    if not report.usable:
        report.problem = "; ".join(f"{m.upper()} half: {r.problem}" for m, r in halves.items() if not r.usable)
        return report
    wrong = [m for m, r in halves.items() if r.site.modality != m]
    if wrong:
        report.usable = False
        report.problem = "; ".join(f"the {m.upper()} folder's site.yaml says modality {halves[m].site.modality!r}" for m in wrong)
        return report
    try:
        paired = pair_site(cfg.name, loaded["eeg"], loaded["ecg"], pairs_table(folder), data.split.seed,
                           data.split.val_frac, data.split.test_frac)
    except SiteError as err:
        report.usable, report.problem = False, err.reason
        return report
    report.record_pairs, report.unmatched = paired.record_pairs, paired.unmatched
    report.pairs = {s: int((paired.split == s).sum()) for s in SPLITS} | {"all": len(paired.y)}
    report.max_pairs_per_subject = paired.max_pairs_per_subject()
    if not len(paired.y):
        report.usable, report.problem = False, "no epoch holds both modalities in an accepted record pair"
    return report


def format_paired_report(r: PairedReport) -> str:
    lines = [f"paired site {r.name!r} at {r.folder} (EEG and ECG of the same epochs; joins as ONE node, one ledger)"]
    for m, half in r.halves.items():
        lines += [f"--- {m.upper()} half", format_report(half)]
    lines.append("--- pairs (an epoch with both modalities; the privacy unit of this site)")
    for p in r.record_pairs:
        state = f"REFUSED: {p.refused}" if p.refused else f"{p.pairs} pairs"
        lines.append(f"  {p.eeg} + {p.ecg} ({p.subject}): {p.eeg_windows} EEG / {p.ecg_windows} ECG windows -> {state}")
    if r.unmatched:
        lines.append(f"records without a partner (not used for pairs): {', '.join(r.unmatched)}")
    if r.pairs:
        lines.append("pairs per split: " + ", ".join(f"{k} {v}" for k, v in r.pairs.items())
                     + f"; at most {r.max_pairs_per_subject} per subject")
    if r.problem:
        lines.append(f"UNUSABLE: {r.problem}")
    lines.append(f"status      {'OK' if r.usable else 'UNUSABLE'} (this check read local files only and sent nothing)")
    return "\n".join(lines)
