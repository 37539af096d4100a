"""Write a whole synthetic federation (single-modality and paired sites) from a typed spec."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import yaml
from tqdm.auto import tqdm

from fedxalign.shared.data.config import SiteConfig
from fedxalign.shared.data.paired import PairedSiteConfig
from fedxalign.shared.data.synthetic.ecg import simulate_ecg
from fedxalign.shared.data.synthetic.eeg import simulate_eeg
from fedxalign.shared.data.synthetic.states import STAGES, Subject, draw_hypnogram, draw_latent, draw_subject
from fedxalign.shared.data.synthetic.writers import ExtraSignal, write_edf, write_hypnogram, write_wfdb
from fedxalign.shared.errors import ConfigError, check_option

log = logging.getLogger(__name__)

MANIFEST = "federation.yaml"

# sleep_edf: Sleep-EDF Expanded's sleep-cassette layout, SC4ssNE0-PSG.edf + SC4ssNEC-Hypnogram.edf, with its
# EOG and rectal temperature (1 Hz, DegC) beside the EEG channels the spec names
# slpdb: the MIT-BIH Polysomnographic Database, records slpNN[a-c] holding ECG, BP, one EEG and respiration at
# one rate, stages in `.st` aux notes every 30 s that may carry respiratory events after the stage ('2 OA')
LAYOUTS = ("plain", "sleep_edf", "slpdb")
SLPDB_EEG = "EEG (C4-A1)"
SLPDB_EVENTS = ("H", "HA", "OA", "CA", "X")

# how each annotation convention names the five stages, and what it writes for unscored epochs
LABEL_STYLES: dict[str, dict[str, Any]] = {
    "aasm": {"names": {"W": ["Sleep stage W"], "N1": ["Sleep stage N1"], "N2": ["Sleep stage N2"],
                       "N3": ["Sleep stage N3"], "REM": ["Sleep stage R"]}, "unscored": "Sleep stage ?"},
    "rk": {"names": {"W": ["Sleep stage W"], "N1": ["Sleep stage 1"], "N2": ["Sleep stage 2"],
                     "N3": ["Sleep stage 3", "Sleep stage 4"], "REM": ["Sleep stage R"]}, "unscored": "Movement time"},
    "mitbih": {"names": {"W": ["W"], "N1": ["1"], "N2": ["2"], "N3": ["3", "4"], "REM": ["R"]}, "unscored": "MT"},
    "short": {"names": {"W": ["wake"], "N1": ["n1"], "N2": ["n2"], "N3": ["n3"], "REM": ["rem"]}, "unscored": "artefact"},
}


@dataclass(frozen=True)
class SiteSpec:
    """One generated single-modality site. Amplitudes: EEG in uV, ECG in mV."""

    name: str
    modality: str
    format: str
    sfreq: float
    channels: tuple[str, ...]
    n_subjects: int = 6
    records_per_subject: int = 1
    hours_per_record: float = 0.75
    label_style: str = "aasm"
    label_source: str = "embedded"
    gain: float = 1.0
    noise: float = 2.0
    line_hz: float | None = 50.0
    line_amp: float = 2.0
    artefact_rate: float = 6.0
    wander: float = 0.08
    wfdb_fmt: str = "16"
    stage_tilt: tuple[float, ...] | None = None
    unscored_frac: float = 0.02
    layout: str = "plain"  # plain | sleep_edf: an archive's own file naming and signal set (see LAYOUTS)

    def __post_init__(self) -> None:
        check_option("modality", self.modality, ("eeg", "ecg"))
        check_option("layout", self.layout, LAYOUTS)
        if self.layout == "slpdb" and (self.modality, self.label_style, tuple(self.channels)) != ("ecg", "mitbih", ("ECG",)):
            raise ConfigError(f"site {self.name!r}: layout slpdb writes an ECG site (channels: [ECG], label_style: mitbih) "
                              f"whose records also hold {SLPDB_EEG!r}, BP and respiration")
        if self.layout == "sleep_edf" and (self.format, self.label_source, self.label_style) != ("edf", "hypnogram", "rk"):
            raise ConfigError(f"site {self.name!r}: layout sleep_edf writes EDF with R&K hypnogram files "
                              "(format: edf, label_source: hypnogram, label_style: rk)")
        check_option("label_style", self.label_style, tuple(LABEL_STYLES))
        want = ("edf", "bdf") if self.modality == "eeg" else ("wfdb",)
        check_option(f"format (for {self.modality})", self.format, want)
        if self.stage_tilt is not None and len(self.stage_tilt) != len(STAGES):
            raise ConfigError(f"site {self.name!r}: stage_tilt needs {len(STAGES)} values, got {len(self.stage_tilt)}")
        if self.n_subjects < 1 or self.records_per_subject < 1 or self.hours_per_record <= 0:
            raise ConfigError(f"site {self.name!r}: subjects, records and hours must be positive")

    def site_config(self) -> SiteConfig:
        names = LABEL_STYLES[self.label_style]["names"]
        label_map = {alias: stage for stage, aliases in names.items() for alias in aliases}
        return SiteConfig(
            name=self.name, modality=self.modality, format=self.format, label_map=label_map,
            channels=tuple(self.channels), label_source=self.label_source,
            annotation_extension="st", label_field="aux_note", label_first_token=self.layout == "slpdb",
            subject_regex=r"slp(\d\d)" if self.layout == "slpdb" else None,
        )


@dataclass(frozen=True)
class PairedSpec:
    """A site that recorded EEG and ECG at the same time on the same subjects (like a PSG lab)."""

    name: str
    eeg: SiteSpec
    ecg: SiteSpec


@dataclass(frozen=True)
class FederationSpec:
    seed: int = 0
    epoch_s: float = 30.0
    latent_spread: float = 0.2
    sites: tuple[SiteSpec, ...] = ()
    paired: tuple[PairedSpec, ...] = ()

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> FederationSpec:
        def site(v: Mapping[str, Any], **extra: Any) -> SiteSpec:
            v = {**dict(v), **extra}
            names = {f.name for f in dataclasses.fields(SiteSpec)}
            unknown = sorted(set(v) - names)
            if unknown:
                raise ConfigError(f"unknown generator site setting(s) {unknown}; allowed: {sorted(names)}")
            return SiteSpec(**{k: tuple(x) if isinstance(x, list) else x for k, x in v.items()})

        v = dict(values)
        sites = tuple(site(s) for s in v.pop("sites", []) or [])
        paired = tuple(
            PairedSpec(p["name"], site(p["eeg"], name=f"{p['name']}/eeg", modality="eeg"),
                       site(p["ecg"], name=f"{p['name']}/ecg", modality="ecg",
                            label_style=p["eeg"].get("label_style", "aasm"), n_subjects=p["eeg"].get("n_subjects", 6),
                            records_per_subject=p["eeg"].get("records_per_subject", 1),
                            hours_per_record=p["eeg"].get("hours_per_record", 0.75)))
            for p in v.pop("paired", []) or []
        )
        names = [s.name for s in sites] + [p.name for p in paired]
        if len(set(names)) != len(names):
            raise ConfigError(f"site names must be unique, got {names}")
        return cls(sites=sites, paired=paired, **v)

    def fingerprint(self) -> str:
        """What the folder was generated from: a changed spec (more subjects, another seed) means other data."""
        return hashlib.sha256(json.dumps(dataclasses.asdict(self), sort_keys=True).encode()).hexdigest()[:16]


def _record_names(spec: SiteSpec, subj: int, night: int) -> tuple[str, str | None]:
    """Sleep-EDF-style names for hypnogram sites, plain names otherwise."""
    if spec.format in ("edf", "bdf") and spec.label_source == "hypnogram":
        return f"SC4{subj:02d}{night + 1}E0-PSG", f"SC4{subj:02d}{night + 1}EC-Hypnogram"
    if spec.layout == "slpdb":
        return f"slp{subj + 1:02d}{'abcdefgh'[night] if spec.records_per_subject > 1 else ''}", None
    stem = spec.name.replace("/", "_")
    return f"{stem}_{subj:02d}_{night + 1}", None


def _labels(stages: np.ndarray, spec: SiteSpec, rng: np.random.Generator) -> list[str]:
    style = LABEL_STYLES[spec.label_style]
    out = []
    for s in stages:
        if rng.random() < spec.unscored_frac:
            out.append(style["unscored"])
        else:
            aliases = style["names"][STAGES[s]]
            out.append(aliases[int(rng.integers(0, len(aliases)))])
    return out


def _sleep_edf_extras(latent: np.ndarray, epoch_s: float, fs: float, rng: np.random.Generator) -> list[ExtraSignal]:
    """Sleep-EDF's other signals: horizontal EOG (uV, at the EEG rate) and rectal temperature (DegC, 1 Hz)."""
    n_s = int(len(latent) * epoch_s)
    eog = np.cumsum(rng.normal(0, 1.0, int(n_s * fs))) * 0.5
    eog -= np.convolve(eog, np.ones(int(fs)) / fs, mode="same")
    temp = 36.8 + 0.3 * np.sin(np.linspace(0, np.pi, n_s)) + rng.normal(0, 0.01, n_s)
    return [ExtraSignal("EOG horizontal", eog, fs, "uV", (-1000.0, 1000.0)), ExtraSignal("Temp rectal", temp, 1.0, "DegC", (33.0, 40.0))]


def _slpdb_record(ecg: np.ndarray, latent: np.ndarray, subject: Subject, spec: SiteSpec, epoch_s: float,
                  notes: list[tuple[float, str]], rng: np.random.Generator):
    """slpdb's signal set around the simulated ECG: BP (mmHg), the same night's EEG (mV), respiration; events after some stages."""
    n = ecg.shape[1]
    t = np.arange(n) / spec.sfreq
    eeg = simulate_eeg(latent, subject, [SLPDB_EEG], spec.sfreq, epoch_s, 2.0, spec.line_hz, 1.0, 4.0, rng)[:, :n] / 1000.0
    bp = 90 + 25 * np.abs(np.sin(np.pi * 1.1 * t)) + rng.normal(0, 1.0, n)
    resp = 0.4 * np.sin(2 * np.pi * 0.25 * t) + rng.normal(0, 0.02, n)
    x = np.vstack([ecg[:1], bp[None], eeg, resp[None]])
    notes = [(o, f"{lab} {SLPDB_EVENTS[int(rng.integers(len(SLPDB_EVENTS)))]}" if lab != "MT" and rng.random() < 0.2 else lab)
             for o, lab in notes]
    return x, ["ECG", "BP", SLPDB_EEG, "Resp (sum)"], ["mV", "mmHg", "mV", "l"], notes


def _write_record(spec: SiteSpec, folder: Path, subj_idx: int, night: int, subject: Subject,
                  latent: np.ndarray, labels: list[str], epoch_s: float, rng: np.random.Generator) -> None:
    rec, hyp = _record_names(spec, subj_idx, night)
    spans = [(i * epoch_s, epoch_s, lab) for i, lab in enumerate(labels)]
    if spec.modality == "eeg":
        x = spec.gain * simulate_eeg(latent, subject, list(spec.channels), spec.sfreq, epoch_s, spec.noise,
                                     spec.line_hz, spec.line_amp, spec.artefact_rate, rng)
        ext = ".bdf" if spec.format == "bdf" else ".edf"
        embedded = spans if spec.label_source == "embedded" else ()
        extra = _sleep_edf_extras(latent, epoch_s, spec.sfreq, rng) if spec.layout == "sleep_edf" else ()
        write_edf(folder / f"{rec}{ext}", x, spec.sfreq, spec.channels, subject.id, embedded, bdf=spec.format == "bdf",
                  extra=extra)
        if hyp is not None:
            write_hypnogram(folder / f"{hyp}.edf", subject.id, spans)
    else:
        x = spec.gain * simulate_ecg(latent, subject, list(spec.channels), spec.sfreq, epoch_s, spec.noise / 100.0,
                                     spec.line_hz, spec.line_amp / 100.0, spec.wander, rng)
        notes = [(o, lab) for o, _, lab in spans]
        names, units = list(spec.channels), ["mV"] * len(spec.channels)
        if spec.layout == "slpdb":
            x, names, units, notes = _slpdb_record(x, latent, subject, spec, epoch_s, notes, rng)
        write_wfdb(folder, rec, x, spec.sfreq, names, subject.id, spec.wfdb_fmt, notes, units=units)


def generate_federation(spec: FederationSpec, out_dir: str | Path, overwrite: bool = False, progress: bool = True) -> dict[str, Path]:
    """Write every site under `out_dir/<site name>` with its `site.yaml`, plus a `federation.yaml`.

    Deterministic for a given spec (seeded per site). Refuses to write into a non-empty
    `out_dir` unless `overwrite`, so a real data folder is never clobbered by mistake.
    """
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"{out} is not empty; pass overwrite=True (generate ... overwrite=true) to replace it")
    if overwrite:
        _remove_previous(out)
    out.mkdir(parents=True, exist_ok=True)
    jobs: list[tuple[str, list[SiteSpec]]] = [(s.name, [s]) for s in spec.sites] + [(p.name, [p.eeg, p.ecg]) for p in spec.paired]
    folders: dict[str, Path] = {}
    total = sum(s.n_subjects * s.records_per_subject for _, specs in jobs for s in specs)
    bar = tqdm(total=total, desc="generating federation", unit="record", disable=not progress)
    for k, (site_name, specs) in enumerate(jobs):
        rng = np.random.default_rng([spec.seed, k])
        head = specs[0]
        n_epochs = int(round(head.hours_per_record * 3600 / spec.epoch_s))
        subjects = [draw_subject(f"{site_name.replace('/', '_')}-S{i:02d}", rng) for i in range(head.n_subjects)]
        for s in specs:
            folder = out / s.name
            folder.mkdir(parents=True, exist_ok=True)
            s.site_config().write(folder)
            folders[s.name] = folder
        for i, subject in enumerate(subjects):
            for night in range(head.records_per_subject):
                tilt = np.asarray(head.stage_tilt) if head.stage_tilt is not None else None
                stages = draw_hypnogram(n_epochs, rng, tilt)
                latent = draw_latent(stages, subject, rng, spec.latent_spread)
                labels = _labels(stages, head, rng)
                for s in specs:  # paired: same stages, latent and labels in both modalities
                    _write_record(s, folders[s.name], i, night, subject, latent, labels, spec.epoch_s,
                                  np.random.default_rng([spec.seed, k, i, night, s.modality == "ecg"]))
                    bar.update(1)
    bar.close()
    for p in spec.paired:  # one node at the site: both halves under one folder with its paired.yaml
        PairedSiteConfig(p.name, folders[p.eeg.name], folders[p.ecg.name]).write(out / p.name)
    manifest = {
        "vocabulary": list(STAGES),
        "sites": {name: {"folder": str(p.relative_to(out)), "modality": next(s.modality for _, ss in jobs for s in ss if s.name == name)}
                  for name, p in folders.items()},
        "paired": {p.name: {"eeg": p.eeg.name, "ecg": p.ecg.name} for p in spec.paired},
        "seed": spec.seed,
        "spec": spec.fingerprint(),
    }
    (out / MANIFEST).write_text(yaml.safe_dump(manifest, sort_keys=False))
    return folders


def _remove_previous(out: Path) -> None:
    """Delete the site folders an earlier generation listed in its manifest, so none of its records outlive it.

    Only what the manifest names, inside `out`: a record the new spec no longer writes (fewer
    subjects) would otherwise be read as data; anything else in the folder is left alone.
    """
    manifest = out / MANIFEST
    if not manifest.is_file():
        return
    old = yaml.safe_load(manifest.read_text()) or {}
    tops = {Path(v["folder"]).parts[0] for v in (old.get("sites") or {}).values() if v.get("folder")} | set(old.get("paired") or {})
    for top in sorted(tops):
        folder = (out / top).resolve()
        if folder.parent == out.resolve() and folder.is_dir():
            shutil.rmtree(folder)
    manifest.unlink()


def ensure_federation(spec: FederationSpec, out_dir: str | Path) -> bool:
    """Generate `out_dir` unless it already holds this spec's output; True when it (re)generated.

    A folder the generator wrote for another spec (its manifest names another fingerprint, or
    none: written before fingerprints) is regenerated, so an edited config never runs on stale
    data. A folder without the generator's manifest is not ours to replace: `generate_federation`
    refuses it when it is not empty.
    """
    out = Path(out_dir)
    manifest = out / MANIFEST
    if manifest.is_file():
        written = (yaml.safe_load(manifest.read_text()) or {}).get("spec")
        if written == spec.fingerprint():
            return False
        log.warning("%s was generated from another spec (%s, now %s): regenerating it", out, written or "unrecorded",
                    spec.fingerprint())
    generate_federation(spec, out, overwrite=manifest.is_file())
    return True
