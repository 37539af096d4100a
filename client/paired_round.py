"""One round at a paired site (EEG and ECG of the same epochs): one node, one ledger, one budget.

Both encoders and the fusion head train in ONE DP-SGD run whose unit is the pair (the EEG
and ECG windows of one 30-s epoch): Poisson sampling draws pairs, and each pair's loss (both
prototype terms, the sample-level contrastive term, the fusion decoders and reconstruction)
depends on that pair and on the server's public broadcast alone, so clipping each pair's
gradient bounds it. The round ends in one joint release of both modalities' prototypes and
their shared count (`shared.privacy.release.release_joint`). State lives in the site's own
folder as for a single-modality site, with one encoder file per modality and the fusion head.
A federated pretraining round trains both encoders by dual-masked reconstruction in the same
one DP-SGD run over pairs, releases no prototype and shares the encoders.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from torch import nn

from fedxalign.client.site_round import (FUSION_FILE, LAST_GLOBAL_FILE, PAIRED_ENCODER_FILES, SiteReply, answer_round, finite,
                               load_paired_encoder, local_anchors, request_key, site_seed)
from fedxalign.client.training import MASK, OBJECTIVES, BatchLoss, TrainReport, dp_train, embed, project
from fedxalign.shared.atomic_files import write_npz
from fedxalign.shared.data.paired import MODALITIES, PairDataset, PairedSiteData
from fedxalign.shared.device import pick_device
from fedxalign.shared.errors import check_option
from fedxalign.shared.losses import orthogonality, paired_contrastive, patch_contrastive, prototype_loss
from fedxalign.shared.models.encoder import CrissCrossEncoder, EncoderConfig, WindowInputs, set_trainable, weight_shapes
from fedxalign.shared.models.fusion import FusionConfig, FusionHead, anchor_scores, build_fusion, draw_dropout, fusion_shapes
from fedxalign.shared.models.pretraining import dual_mask, reconstruction_loss, set_pretrainable
from fedxalign.shared.models.window_inputs import WithWindowInputs, split_batch
from fedxalign.shared.privacy.config import PrivacyConfig
from fedxalign.shared.privacy.ledger import PrivacyLedger
from fedxalign.shared.privacy.randomness import secure_torch_generator
from fedxalign.shared.privacy.release import effective_release_sigma, release_joint
from fedxalign.shared.protocol import FUSION_PREFIX, WEIGHT_PREFIX, GlobalState, ReplySpec, pack_paired_global
from fedxalign.shared.train_config import TrainConfig

log = logging.getLogger(__name__)


class PairedModel(nn.Module):
    """The paired site's trainable whole: `eeg`, `ecg` encoders and the `fusion` head (None when the run does not fuse)."""

    def __init__(self, eeg: CrissCrossEncoder, ecg: CrissCrossEncoder, fusion: FusionHead | None) -> None:
        super().__init__()
        self.eeg, self.ecg, self.fusion = eeg, ecg, fusion

    def forward(self, x_eeg: torch.Tensor, x_ecg: torch.Tensor, segments: int = 0, in_eeg: WindowInputs | None = None,
                in_ecg: WindowInputs | None = None):
        """Each encoder's (z, specific, features), and its span embeddings when `segments` > 0."""
        return (self.eeg(x_eeg, return_features=True, segments=segments, inputs=in_eeg),
                self.ecg(x_ecg, return_features=True, segments=segments, inputs=in_ecg))


def paired_loss(anchors: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor], heads: Mapping[str, torch.Tensor | None],
                train_cfg: TrainConfig, fusion_cfg: FusionConfig, sample_level: bool,
                generator: torch.Generator | None = None) -> BatchLoss:
    """The per-pair objective; `sample_level` adds the contrastive pull of each pair once the server's anchors exist
    (and, with `fusion_cfg.patch_weight`, the patch-level pull of its time spans).

    Modality dropout for the masked decoder is drawn per pair (from `generator`): it needs no
    secrecy, and one pair's draw never touches another's loss.
    """
    both = present["eeg"] & present["ecg"]
    patch_level = sample_level and fusion_cfg.patch_weight > 0
    segments = fusion_cfg.patch_spans if patch_level else 0

    def loss(module: nn.Module, batch: list[torch.Tensor]) -> torch.Tensor:
        (x_eeg, x_ecg), (in_eeg, in_ecg), y = split_batch(batch, 2)
        (re, se, _, *spans_e), (rc, sc, _, *spans_c) = module(x_eeg, x_ecg, segments, in_eeg, in_ecg)
        ze, zc = project(re, heads["eeg"]), project(rc, heads["ecg"])
        total = prototype_loss(ze, y, anchors["eeg"], train_cfg.tau, present["eeg"], train_cfg.pull_weight) \
            + prototype_loss(zc, y, anchors["ecg"], train_cfg.tau, present["ecg"], train_cfg.pull_weight)
        for raw, spec in ((re, se), (rc, sc)):
            if spec is not None:
                total = total + train_cfg.orth_weight * orthogonality(raw, spec)
        if sample_level and fusion_cfg.pair_weight > 0:
            total = total + fusion_cfg.pair_weight * paired_contrastive(ze, zc, y, anchors["eeg"], anchors["ecg"], fusion_cfg.tau, both)
        if patch_level:
            total = total + fusion_cfg.patch_weight * patch_contrastive(project(spans_e[0], heads["eeg"]),
                                                                        project(spans_c[0], heads["ecg"]), fusion_cfg.tau)
        fusion = getattr(module, "_module", module).fusion
        if fusion is not None:
            drop = draw_dropout(len(y), fusion_cfg.modality_dropout, generator, y.device)
            se_, sc_ = (anchor_scores(z.detach(), anchors[m], present[m]) for z, m in ((ze, "eeg"), (zc, "ecg")))
            total = total + fusion_cfg.fusion_weight * fusion.loss(se_, sc_, y, drop)
        return total

    return loss


def paired_reconstruction_loss(generator: torch.Generator | None = None) -> BatchLoss:
    """Federated pretraining at a paired site: both encoders' dual-masked reconstruction of the pair.

    Each window's masks are its own draw and each window's error is averaged over its own hidden
    patches, so a pair's loss depends on that pair alone, as per-pair clipping needs.
    """

    def loss(module: nn.Module, batch: list[torch.Tensor]) -> torch.Tensor:
        inner = getattr(module, "_module", module)  # Opacus' hooks sit on the layers, so the encoders are called directly
        total = torch.zeros((), device=batch[0].device)
        for encoder, x in ((inner.eeg, batch[0]), (inner.ecg, batch[1])):
            total = total + reconstruction_loss(encoder, x, dual_mask(*x.shape[:3], MASK.mask_ratio, MASK.span_patches,
                                                                      generator, x.device))
        return total

    return loss


def load_fusion(state_dir: Path, site_name: str, n_classes: int, cfg: FusionConfig,
                weights: Mapping[str, np.ndarray] | None) -> FusionHead:
    """The server's averaged fusion head wins; else the site's own last one; else a fresh, seeded one."""
    head = build_fusion(n_classes, cfg.kind, site_seed(site_name + "/fusion"), cfg.tau)
    if weights is not None:
        head.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in weights.items()})
    elif (state_dir / FUSION_FILE).is_file():
        head.load_state_dict(torch.load(state_dir / FUSION_FILE, weights_only=True))
    return head


@dataclass
class _PairedWork:
    """A paired site's round: both encoders and the fusion head in one DP-SGD run, one joint release."""

    data: PairedSiteData
    state_dir: Path
    model_cfgs: Mapping[str, EncoderConfig]
    fusion_cfg: FusionConfig
    train_cfg: TrainConfig
    privacy_cfg: PrivacyConfig
    model: PairedModel
    anchors: dict[str, np.ndarray]
    present: dict[str, np.ndarray]
    heads: dict[str, torch.Tensor | None]
    sample_level: bool
    release_sigma: float
    rng: np.random.Generator | None
    round_no: int
    objective: str = "prototypes"
    train_set: PairDataset = field(init=False)

    def __post_init__(self) -> None:
        self.train_set = self.data.dataset("train")

    def train(self, ledger: PrivacyLedger) -> TrainReport | None:
        device = pick_device(self.train_cfg.device)
        train_set: torch.utils.data.Dataset = self.train_set
        if self.objective == "reconstruction":
            loss = paired_reconstruction_loss(secure_torch_generator())
        else:
            train_set = WithWindowInputs([self.train_set.x_eeg, self.train_set.x_ecg], [self.model.eeg, self.model.ecg],
                                         self.train_set.y, self.train_set.subject)  # once, not once per epoch
            loss = paired_loss({m: torch.from_numpy(a).to(device) for m, a in self.anchors.items()},
                               {m: torch.from_numpy(p).to(device) for m, p in self.present.items()},
                               {m: h.to(device) if h is not None else None for m, h in self.heads.items()}, self.train_cfg,
                               self.fusion_cfg, self.sample_level, generator=secure_torch_generator())
        return dp_train(self.model, train_set, torch.from_numpy(self.anchors["eeg"]), torch.from_numpy(self.present["eeg"]),
                        self.train_cfg, self.privacy_cfg, ledger, round_no=self.round_no, batch_loss=loss,
                        release_sigma=self.release_sigma, lr_scales={"fusion.": self.fusion_cfg.lr_scale})

    def keep(self) -> bool:
        if finite(self.model):
            for m in MODALITIES:
                torch.save(getattr(self.model, m).state_dict(), self.state_dir / PAIRED_ENCODER_FILES[m])
            if self.model.fusion is not None:
                torch.save(self.model.fusion.state_dict(), self.state_dir / FUSION_FILE)
            return True
        self.model = load_paired_model(self.data, self.state_dir, self.model_cfgs, self.fusion_cfg,
                                       {m: None for m in MODALITIES}, None, self.model.fusion is not None)
        return False

    def release(self, ledger: PrivacyLedger | None) -> dict[str, np.ndarray]:
        if self.objective != "prototypes":  # a pretraining round releases none
            return self.empty()
        train, cfg = self.train_set, self.privacy_cfg
        protos, counts = release_joint([embed(self.model.eeg, train.x_eeg, self.heads["eeg"]),
                                        embed(self.model.ecg, train.x_ecg, self.heads["ecg"])],
                                       train.y.numpy(), len(self.data.vocabulary), cfg.proto_clip, cfg.proto_noise_multiplier,
                                       cfg.min_count, self.rng, ledger, subjects=train.subject if cfg.unit == "subject" else None,
                                       round_no=self.round_no)
        return {"eeg.prototypes": protos[0], "ecg.prototypes": protos[1], "counts": counts}

    def empty(self) -> dict[str, np.ndarray]:
        n, d = len(self.data.vocabulary), self.model_cfgs["eeg"].embed_dim
        return {"eeg.prototypes": np.zeros((n, d), np.float32), "ecg.prototypes": np.zeros((n, d), np.float32),
                "counts": np.zeros(n, np.float32)}

    def shared(self) -> dict[str, np.ndarray]:
        arrays = {f"{m}.{WEIGHT_PREFIX}{k}": v.detach().numpy().copy()
                  for m in MODALITIES for k, v in getattr(self.model, m).state_dict().items()}
        if self.model.fusion is not None:
            arrays |= {FUSION_PREFIX + k: v.detach().numpy().copy() for k, v in self.model.fusion.state_dict().items()}
        return arrays


def load_paired_model(data: PairedSiteData, state_dir: Path, model_cfgs: Mapping[str, EncoderConfig], fusion_cfg: FusionConfig,
                      weights: Mapping[str, Mapping[str, np.ndarray] | None], fusion_weights: Mapping[str, np.ndarray] | None,
                      fuse: bool) -> PairedModel:
    """Both encoders (and the fusion head when `fuse`), each from the server's weights, else the site's last, else a fresh start."""
    encoders = {m: load_paired_encoder(state_dir, model_cfgs[m], data.name, weights[m]) for m in MODALITIES}
    fusion = load_fusion(state_dir, data.name, len(data.vocabulary), fusion_cfg, fusion_weights) if fuse else None
    return PairedModel(encoders["eeg"], encoders["ecg"], fusion)


def train_paired_round(data: PairedSiteData, state_dir: str | Path, model_cfgs: Mapping[str, EncoderConfig],
                       train_cfg: TrainConfig, privacy_cfg: PrivacyConfig, fusion_cfg: FusionConfig,
                       globs: Mapping[str, GlobalState], fusion_weights: Mapping[str, np.ndarray] | None = None,
                       share_weights: bool = False, report_train_loss: bool = False, round_no: int = 0,
                       rng: np.random.Generator | None = None, max_releases: int | None = None,
                       objective: str = "prototypes") -> SiteReply:
    """As `client.site_round.train_round`, for both modalities of the pairs at once; returns the checked reply.

    Before the server has sent anchors each modality trains against the same modality-seeded
    anchors as single-modality sites do, and the sample-level term waits for the server's.
    """
    check_option("objective", objective, OBJECTIVES)
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    key = request_key(round_no, pack_paired_global(globs, fusion_weights), dict(model_cfgs), train_cfg, privacy_cfg,
                      fusion_cfg, share_weights, report_train_loss, objective)
    n_classes, dim = len(data.vocabulary), model_cfgs["eeg"].embed_dim
    release_sigma = effective_release_sigma(privacy_cfg.proto_noise_multiplier, parts=2)

    def start() -> _PairedWork:
        anchors = {m: g.anchors if g.anchors is not None else local_anchors(m, n_classes, dim) for m, g in globs.items()}
        present = {m: g.present if g.present is not None else np.ones(n_classes, bool) for m, g in globs.items()}
        write_npz(state_dir / LAST_GLOBAL_FILE, pack_paired_global(
            {m: GlobalState(anchors[m], present[m], globs[m].head) for m in MODALITIES}, None))
        model = load_paired_model(data, state_dir, model_cfgs, fusion_cfg, {m: globs[m].weights for m in MODALITIES},
                                  fusion_weights, fusion_cfg.enabled)
        for m in MODALITIES:
            if objective == "reconstruction":  # what the reconstruction uses; the fusion head waits for labels
                set_pretrainable(getattr(model, m))
            else:
                set_trainable(getattr(model, m), train_cfg.trainable, train_cfg.top_layers)
        if model.fusion is not None and objective == "reconstruction":
            model.fusion.requires_grad_(False)
        heads = {m: torch.from_numpy(np.asarray(g.head, np.float32)) if g.head is not None else None for m, g in globs.items()}
        return _PairedWork(data, state_dir, model_cfgs, fusion_cfg, train_cfg, privacy_cfg, model, anchors, present, heads,
                           all(g.anchors is not None for g in globs.values()), release_sigma, rng, round_no, objective)

    sizes = {int((data.split == s).sum()) for s in ("train", "val", "test")} | {len(data.y), len(data.eeg.y), len(data.ecg.y)}
    spec = ReplySpec(n_classes=n_classes, embed_dim=dim, paired=True, forbidden_sizes=frozenset(sizes),
                     paired_weight_shapes={m: weight_shapes(model_cfgs[m]) for m in MODALITIES} if share_weights else None,
                     fusion_shapes=fusion_shapes(n_classes, fusion_cfg.kind) if share_weights and fusion_cfg.enabled else None,
                     epsilon_budget=privacy_cfg.epsilon if privacy_cfg.enabled else None)
    return answer_round(data.name, state_dir, round_no, key, privacy_cfg, release_sigma, start, spec, share_weights,
                        report_train_loss, max_releases)
