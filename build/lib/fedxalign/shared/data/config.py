"""Typed settings of one site and of the federation's preprocessing, with validation.

These dataclasses are the single schema for data settings: Hydra YAML, a site's `site.yaml`
and Flower's flat `node_config` all become a `SiteConfig` through `from_mapping`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from fedxalign.shared.errors import ConfigError, check_option
from fedxalign.shared.schema import build

MODALITIES = ("eeg", "ecg")
FORMATS = ("edf", "bdf", "wfdb")
EDF_LABEL_SOURCES = ("embedded", "hypnogram")
WFDB_LABEL_FIELDS = ("aux_note", "symbol")
NORMALISATIONS = ("robust", "zscore", "none")
SITE_FILE = "site.yaml"


@dataclass(frozen=True)
class PreprocessConfig:
    """How every record becomes fixed windows; shared by all sites of one modality.

    Units: frequencies in Hz, durations in seconds. Windows are `window_s * sfreq` samples,
    split into `window_s / patch_s` patches of `patch_s * sfreq` samples each.
    """

    sfreq: float = 100.0
    window_s: float = 30.0
    patch_s: float = 1.0
    l_freq: float | None = 0.3
    h_freq: float | None = 35.0
    notch: float | None = None
    normalisation: str = "robust"
    clip: float = 20.0
    label_coverage: float = 1.0
    flat_std: float = 1e-12
    beat_channels: bool = False  # ECG: add the RR-interval series (shared/data/beats.py) as two channels after the leads

    def __post_init__(self) -> None:
        check_option("normalisation", self.normalisation, NORMALISATIONS)
        if self.sfreq <= 0 or self.window_s <= 0 or self.patch_s <= 0:
            raise ConfigError(f"sfreq, window_s and patch_s must be positive, got {self}")
        n_patch = self.window_s / self.patch_s
        if abs(n_patch - round(n_patch)) > 1e-9:
            raise ConfigError(f"{self.window_s=} must be a whole number of {self.patch_s=}")
        spp = self.sfreq * self.patch_s
        if abs(spp - round(spp)) > 1e-9:
            raise ConfigError(f"{self.sfreq=} x {self.patch_s=} must be a whole number of samples")
        if self.h_freq is not None and self.h_freq >= self.sfreq / 2:
            raise ConfigError(f"{self.h_freq=} must be below the Nyquist frequency {self.sfreq / 2}")
        if not 0 < self.label_coverage <= 1:
            raise ConfigError(f"{self.label_coverage=} must lie in (0, 1]")

    @property
    def window_samples(self) -> int:
        return int(round(self.window_s * self.sfreq))

    @property
    def patch_samples(self) -> int:
        return int(round(self.patch_s * self.sfreq))

    @property
    def n_patches(self) -> int:
        return int(round(self.window_s / self.patch_s))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> PreprocessConfig:
        return build(cls, values, "preprocessing")


@dataclass(frozen=True)
class SiteConfig:
    """One site: what it holds and how to read it.

    `label_map` maps the site's own annotation names onto the federation's shared vocabulary;
    annotation names it does not list are dropped and counted. `channels` empty means all
    signal channels of the first record. A picked channel must carry an electrical unit (V, mV,
    uV, nV) unless its unit is listed in `allowed_units`.
    """

    name: str
    modality: str
    format: str
    label_map: dict[str, str]
    channels: tuple[str, ...] = ()
    label_source: str = "embedded"
    hypnogram_suffix: str = "-Hypnogram.edf"
    annotation_extension: str = "atr"
    label_field: str = "aux_note"
    subject_regex: str | None = None
    allowed_units: tuple[str, ...] = ()  # non-electrical units a picked channel may have (e.g. degC for a temperature)
    label_first_token: bool = False  # the label is the annotation's first word ('2 OA' -> '2', as MIT-BIH slpdb notes)

    def __post_init__(self) -> None:
        check_option("modality", self.modality, MODALITIES)
        check_option("format", self.format, FORMATS)
        if self.format in ("edf", "bdf"):
            check_option("label_source", self.label_source, EDF_LABEL_SOURCES)
        else:
            check_option("label_field", self.label_field, WFDB_LABEL_FIELDS)
        if not self.label_map:
            raise ConfigError(f"site {self.name!r}: label_map is empty; it must map at least one annotation name")
        object.__setattr__(self, "channels", tuple(self.channels))
        object.__setattr__(self, "allowed_units", tuple(self.allowed_units))
        object.__setattr__(self, "label_map", {str(k): str(v) for k, v in self.label_map.items()})

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> SiteConfig:
        return build(cls, values, "site")

    @classmethod
    def from_site_dir(cls, site_dir: str | Path) -> SiteConfig:
        """Read `<site_dir>/site.yaml`, the site's own description of its data."""
        path = Path(site_dir) / SITE_FILE
        if not path.is_file():
            raise ConfigError(f"{path}: no site description; pass the site settings explicitly or write this file")
        try:
            values = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML ({err})") from err
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: expected a mapping of settings, got {type(values).__name__}")
        return cls.from_mapping(values)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["channels"] = list(self.channels)
        return out

    def write(self, site_dir: str | Path) -> Path:
        path = Path(site_dir) / SITE_FILE
        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
        return path


def fingerprint(*objs: object) -> str:
    """Stable short hash of dataclasses/dicts, used to key caches."""
    def norm(o: object) -> object:
        if dataclasses.is_dataclass(o):
            return dataclasses.asdict(o)
        return o

    blob = json.dumps([norm(o) for o in objs], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SplitConfig:
    val_frac: float = 0.15
    test_frac: float = 0.2
    seed: int = 0


@dataclass(frozen=True)
class DataConfig:
    """The federation's data contract: shared vocabulary, subject split and per-modality preprocessing."""

    vocabulary: tuple[str, ...]
    preprocess: dict[str, PreprocessConfig]
    split: SplitConfig = field(default_factory=SplitConfig)

    def __post_init__(self) -> None:
        if len(set(self.vocabulary)) != len(self.vocabulary) or len(self.vocabulary) < 2:
            raise ConfigError(f"vocabulary needs at least two distinct labels, got {list(self.vocabulary)}")
        missing = sorted(set(MODALITIES) - set(self.preprocess))
        if missing:
            raise ConfigError(f"preprocess settings missing for modality {missing}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> DataConfig:
        return cls(
            vocabulary=tuple(values["vocabulary"]),
            preprocess={m: PreprocessConfig.from_mapping(v) for m, v in values["preprocess"].items()},
            split=build(SplitConfig, values.get("split", {}), "split"),
        )


def check_label_map(site: SiteConfig, vocabulary: Sequence[str]) -> None:
    """A settings error, before any file is read: every label_map target must be in the federation's vocabulary."""
    unknown = sorted(set(site.label_map.values()) - set(vocabulary))
    if unknown:
        raise ConfigError(f"site {site.name!r}: label_map targets {unknown} are not in the shared vocabulary {list(vocabulary)}")
