"""The one translation between Flower's flat `run_config` and the typed settings of a run.

Flower carries only flat scalar keys; Hydra composes nested YAML. `RunSettings.to_flat()`
and `RunSettings.from_flat()` are the only code that knows the flat key names: every other
module takes the typed dataclasses. Keys are `<section>.<field>` with the field name as in
the dataclass (e.g. `privacy.epsilon`, `preprocess.eeg.sfreq`); None is the string "none",
tuples are comma-joined strings.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, Mapping

from fedxalign.shared.data.beats import BEAT_CHANNELS
from fedxalign.shared.data.config import DataConfig, PreprocessConfig, SplitConfig
from fedxalign.shared.errors import ConfigError, check_option
from fedxalign.shared.models.encoder import EncoderConfig, weight_shapes
from fedxalign.shared.models.fusion import FusionConfig, fusion_shapes
from fedxalign.shared.privacy.config import PrivacyConfig
from fedxalign.shared.protocol import MODALITIES, PAIRED, ReplySpec
from fedxalign.shared.schema import build
from fedxalign.shared.train_config import TrainConfig

AGGREGATORS = ("mean", "trimmed_mean", "median", "centered_clip")


@dataclass(frozen=True)
class AlignConfig:
    """Server-side semantic alignment (Brant-X): InfoNCE over classes, CLIP-style temperature."""

    enabled: bool = True
    anchor_modality: str = "eeg"
    tau: float = 0.1
    steps: int = 300
    lr: float = 0.05
    orth_weight: float = 1.0
    anchor_weight: float = 0.5
    tol: float = 1e-4  # stop the fit early once its loss improves by less than this (relative) over 20 steps
    keep: float = 0.5  # from round 2: the share of last round's anchors and head kept (the step damped against release noise)

    def __post_init__(self) -> None:
        if not 0.0 <= self.keep < 1.0:  # 1 would freeze the first round's anchors and heads for good
            raise ConfigError(f"alignment {self.keep=} must lie in [0, 1)")


@dataclass(frozen=True)
class FederationConfig:
    """Run-wide settings of the coordinator and where a simulation keeps its files."""

    rounds: int = 6
    min_sites: int = 2
    expected_sites: int = 0  # wait for this many sites: up to round_timeout_s before round 1, join_wait_s later
    join_wait_s: float = 0.0  # how long a later round waits for missing sites to (re)join before it starts
    round_timeout_s: float = 600.0
    share_weights: bool = True
    aggregator: str = "centered_clip"
    trim_fraction: float = 0.2
    federation_dir: str = "data/generated/default"
    results_dir: str = "results/latest"
    cache_dir: str = ".cache/fedxalign"
    report_train_loss: bool = False  # a non-DP scalar: asked for only when sites' policies allow it
    count_cap: float = 10_000.0  # a site's noisy count per class weighs at most this much
    client_threads: int = 1  # torch threads per ClientApp; 0 keeps torch's default
    pretrain_rounds: int = 0  # the first rounds train by dual-masked reconstruction under DP (federated pretraining)
    resume: bool = False  # continue the stopped run whose checkpoint is in results_dir (refused without it)
    paired_as: str = "one"  # one: a paired folder (paired.yaml) is one node; two: its halves join as two sites

    def __post_init__(self) -> None:
        check_option("aggregator", self.aggregator, AGGREGATORS)
        check_option("paired_as", self.paired_as, ("one", "two"))
        if self.rounds < 1 or self.min_sites < 1:
            raise ConfigError(f"{self.rounds=} and {self.min_sites=} must be at least 1")
        if not 0 <= self.pretrain_rounds < self.rounds:
            raise ConfigError(f"{self.pretrain_rounds=} must leave at least one of {self.rounds=} for the prototypes")
        if self.pretrain_rounds and not self.share_weights:
            raise ConfigError("federated pretraining (pretrain_rounds > 0) needs share_weights: its rounds share weights only")

    def objective(self, round_no: int) -> str:
        """What a round trains: both sides derive it from the run config and the round number."""
        return "reconstruction" if round_no <= self.pretrain_rounds else "prototypes"


def encoder_for(model: EncoderConfig, modality: str, pre: PreprocessConfig | None,
                overrides: Mapping[str, Any] | None = None) -> EncoderConfig:
    """The encoder of a modality: its patch length, rate and derived (beat) channels come from that
    modality's preprocessing, then its own overrides. The one derivation for runs and pretraining."""
    derived = {"patch_samples": pre.patch_samples, "sfreq": pre.sfreq,
               "derived_channels": len(BEAT_CHANNELS) if pre.beat_channels else 0} if pre is not None else {}
    return dataclasses.replace(model, modality=modality, **(derived | dict(overrides or {})))


PER_MODALITY = {"model": EncoderConfig, "train": TrainConfig}  # sections a modality may override key by key
DERIVED_KEYS = ("planned_rounds",)  # train.planned_rounds is federation.rounds, never a key of its own


@dataclass(frozen=True)
class RunSettings:
    """`model_overrides` / `train_overrides`: per modality, the keys whose values differ from `model` / `train`
    (flat keys `model.ecg.global_bins`, `train.ecg.lr`; Hydra's `model.by_modality.ecg.global_bins`)."""

    federation: FederationConfig
    align: AlignConfig
    data: DataConfig
    model: EncoderConfig
    train: TrainConfig
    privacy: PrivacyConfig
    fusion: FusionConfig = FusionConfig()
    model_overrides: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    train_overrides: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        # rounds live in one key, federation.rounds: the sites' DP noise is sized for that many rounds
        object.__setattr__(self, "train", dataclasses.replace(self.train, planned_rounds=self.federation.rounds))
        for section, table in (("model", self.model_overrides), ("train", self.train_overrides)):
            fields = {f.name for f in dataclasses.fields(PER_MODALITY[section])} - set(DERIVED_KEYS)
            for modality, values in table.items():
                check_option(f"{section} override modality", modality, ("eeg", "ecg"))
                bad = sorted(set(values) - fields - {"modality"}) + (["modality"] if "modality" in values else [])
                if bad or (section == "model" and {"embed_dim", "specific_dim"} & set(values)):
                    raise ConfigError(f"{section}.by_modality.{modality}: cannot override {bad or ['embed_dim/specific_dim (the shared space)']}")
        for m in self.data.preprocess:
            self.model_for(m)  # a modality's patch length must suit the encoder: fail at start, not mid-run

    def model_for(self, modality: str) -> EncoderConfig:
        return encoder_for(self.model, modality, self.data.preprocess.get(modality), self.model_overrides.get(modality))

    def train_for(self, modality: str) -> TrainConfig:
        return dataclasses.replace(self.train, **dict(self.train_overrides.get(modality, {})))

    def train_for_paired(self) -> TrainConfig:
        """A paired site trains both encoders in ONE DP-SGD run (one optimizer, one sampling of pairs), so per-modality
        training overrides cannot apply there; refused rather than silently ignored."""
        if any(self.train_overrides.values()):
            raise ConfigError(f"per-modality training overrides {dict(self.train_overrides)} cannot apply at a paired site, which "
                              "trains both encoders in one DP-SGD run; drop them or run with federation.paired_as=two")
        return self.train

    def fusion_shapes(self) -> dict[str, tuple[int, ...]] | None:
        return fusion_shapes(len(self.data.vocabulary), self.fusion.kind) if self.fusion.enabled else None

    def reply_spec(self, modality: str) -> ReplySpec:
        """What a node of `modality` (or `paired`) may send in this run: the site's allow-list and the coordinator check the same spec."""
        if modality == PAIRED:
            return ReplySpec(n_classes=len(self.data.vocabulary), embed_dim=self.model.embed_dim, paired=True,
                             paired_weight_shapes={m: weight_shapes(self.model_for(m)) for m in MODALITIES}
                             if self.federation.share_weights else None,
                             fusion_shapes=self.fusion_shapes() if self.federation.share_weights else None,
                             epsilon_budget=self.privacy.epsilon if self.privacy.enabled else None)
        return ReplySpec(n_classes=len(self.data.vocabulary), embed_dim=self.model.embed_dim,
                         weight_shapes=weight_shapes(self.model_for(modality)) if self.federation.share_weights else None,
                         epsilon_budget=self.privacy.epsilon if self.privacy.enabled else None)

    def fingerprint(self) -> str:
        """What a checkpoint must have been made with to be resumed: everything that shapes the rounds
        (not where files go, how long to wait, or the resume flag itself)."""
        import hashlib

        operational = {"resume", "results_dir", "federation_dir", "cache_dir", "round_timeout_s", "join_wait_s",
                       "expected_sites", "min_sites", "client_threads"}
        flat = {k: v for k, v in self.to_flat().items() if not (k.startswith("federation.") and k.split(".", 1)[1] in operational)}
        return hashlib.sha256(repr(sorted(flat.items())).encode()).hexdigest()[:16]

    def to_flat(self) -> dict[str, Any]:
        flat: dict[str, Any] = {}
        for name in ("federation", "align", "model", "train", "privacy", "fusion"):
            flat |= _flatten(name, getattr(self, name))
        for key in DERIVED_KEYS:
            del flat[f"train.{key}"]
        for section, table in (("model", self.model_overrides), ("train", self.train_overrides)):
            for modality, values in table.items():
                flat |= {f"{section}.{modality}.{k}": _encode(v) for k, v in values.items()}
        flat |= _flatten("split", self.data.split)
        flat["data.vocabulary"] = ",".join(self.data.vocabulary)
        for modality, pre in self.data.preprocess.items():
            flat |= _flatten(f"preprocess.{modality}", pre)
        return flat

    @classmethod
    def from_flat(cls, flat: Mapping[str, Any]) -> RunSettings:
        known = set(cls.default_keys())
        overrides: dict[str, dict[str, dict[str, Any]]] = {"model": {}, "train": {}}
        for key in flat:
            section, _, rest = key.partition(".")
            modality, _, name = rest.partition(".")
            if section in PER_MODALITY and modality in ("eeg", "ecg") and name:
                hints = typing.get_type_hints(PER_MODALITY[section])
                if name not in hints or name in DERIVED_KEYS:
                    raise ConfigError(f"unknown run_config key {key!r}")
                overrides[section].setdefault(modality, {})[name] = _decode(flat[key], hints[name])
                known.add(key)
        unknown = sorted(set(flat) - known)
        if unknown:
            raise ConfigError(f"unknown run_config key(s) {unknown}")
        modalities = sorted({k.split(".")[1] for k in flat if k.startswith("preprocess.")})
        vocab = tuple(str(flat["data.vocabulary"]).split(",")) if "data.vocabulary" in flat else ()
        return cls(
            federation=_unflatten(FederationConfig, "federation", flat),
            align=_unflatten(AlignConfig, "align", flat),
            data=DataConfig(vocabulary=vocab, split=_unflatten(SplitConfig, "split", flat),
                            preprocess={m: _unflatten(PreprocessConfig, f"preprocess.{m}", flat) for m in modalities}),
            model=_unflatten(EncoderConfig, "model", flat),
            train=_unflatten(TrainConfig, "train", flat),
            privacy=_unflatten(PrivacyConfig, "privacy", flat),
            fusion=_unflatten(FusionConfig, "fusion", flat),
            model_overrides=overrides["model"], train_overrides=overrides["train"],
        )

    @staticmethod
    def default_keys() -> list[str]:
        keys = ["data.vocabulary"]
        for prefix, cls in (("federation", FederationConfig), ("align", AlignConfig), ("model", EncoderConfig),
                            ("train", TrainConfig), ("privacy", PrivacyConfig), ("fusion", FusionConfig), ("split", SplitConfig),
                            ("preprocess.eeg", PreprocessConfig), ("preprocess.ecg", PreprocessConfig)):
            keys += [f"{prefix}.{f.name}" for f in dataclasses.fields(cls) if not (prefix == "train" and f.name in DERIVED_KEYS)]
        return keys

    @classmethod
    def from_nested(cls, values: Mapping[str, Any]) -> RunSettings:
        """From Hydra's composed config (plain containers): sections federation, alignment, data, model, training,
        privacy, and fusion (its defaults when absent)."""
        model, training = dict(values["model"]), dict(values["training"])
        model_by, train_by = model.pop("by_modality", None) or {}, training.pop("by_modality", None) or {}
        return cls(
            federation=build(FederationConfig, values["federation"], "federation"),
            align=build(AlignConfig, values["alignment"], "alignment"),
            data=DataConfig.from_mapping(values["data"]),
            model=EncoderConfig.from_mapping(model),
            train=TrainConfig.from_mapping(training),
            privacy=PrivacyConfig.from_mapping(values["privacy"]),
            fusion=FusionConfig.from_mapping(values.get("fusion") or {}),
            model_overrides={m: dict(v or {}) for m, v in model_by.items() if v},
            train_overrides={m: dict(v or {}) for m, v in train_by.items() if v},
        )


def _encode(value: Any) -> Any:
    if value is None:
        return "none"
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value)
    return value


def _flatten(prefix: str, obj: Any) -> dict[str, Any]:
    return {f"{prefix}.{f.name}": _encode(getattr(obj, f.name)) for f in dataclasses.fields(obj)}


def _decode(value: Any, tp: Any) -> Any:
    args = typing.get_args(tp)
    if type(None) in args:
        if value is None or value == "none":
            return None
        tp = next(a for a in args if a is not type(None))
    if tp is bool:
        return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
    if tp in (int, float, str):
        return tp(value)
    if typing.get_origin(tp) is tuple:
        return tuple(x for x in str(value).split(",") if x) if isinstance(value, str) else tuple(value)
    return value


def _unflatten(cls: type, prefix: str, flat: Mapping[str, Any]):
    hints = typing.get_type_hints(cls)
    values = {f.name: _decode(flat[f"{prefix}.{f.name}"], hints[f.name]) for f in dataclasses.fields(cls) if f"{prefix}.{f.name}" in flat}
    try:
        return cls(**values)
    except TypeError as err:
        raise ConfigError(f"bad {prefix} settings in run_config: {err}") from err
