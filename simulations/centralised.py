"""Centralised upper reference: all sites' training windows pooled, no privacy, trained to convergence.

One encoder per modality (montages differ, so batches are drawn site by site) and one set of
learnable class anchors shared by both modalities, trained with the same prototype objective
(with AdamW: the sites' SGD settings are tuned for DP noise, not for the best non-private model).
Training runs until the balanced accuracy on the pooled validation subjects has not improved
for `patience` epochs, and the best epoch's weights are kept: a reference stopped after a fixed
short schedule is a weak bar that flatters every ratio measured against it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from fedxalign.client.training import embed
from fedxalign.shared.data.site import SiteData
from fedxalign.shared.errors import ConfigError
from fedxalign.shared.losses import prototype_loss
from fedxalign.shared.device import pick_device
from fedxalign.shared.models.encoder import CrissCrossEncoder, build_encoder, set_trainable
from fedxalign.shared.models.pretraining import load_pretrained, pretrained_path
from fedxalign.shared.models.window_inputs import for_windows, split_batch
from fedxalign.shared.runconfig import RunSettings
from fedxalign.shared.schema import build


@dataclass(frozen=True)
class ReferenceConfig:
    """Early stopping of the centralised reference on the validation subjects."""

    max_epochs: int = 150
    patience: int = 12
    lr: float = 3e-3  # AdamW: no DP noise here for its per-coordinate scaling to amplify
    weight_decay: float = 1e-4
    # the learning rate is multiplied by lr_factor when validation has not improved for lr_patience epochs; 1.0 keeps it
    # constant, and the score then jumps between epochs so that early stopping keeps a lucky one
    lr_factor: float = 0.5
    lr_patience: int = 4
    # its own: the sites' training.batch_size is tuned for DP noise, and a sweep of it must not move the bar it is measured against
    batch_size: int = 128
    cache: bool = True  # read it back when code, settings and windows are those of an earlier run (simulations.reference_cache)

    def __post_init__(self) -> None:
        counts = {"max_epochs": 1, "patience": 1, "lr_patience": 0, "batch_size": 1}  # the least each may be (0: cut the rate on every miss)
        bad = [f"reference.{k}={getattr(self, k)!r} must be a whole number of at least {least}" for k, least in counts.items()
               if not isinstance(getattr(self, k), int) or getattr(self, k) < least]
        if not self.lr > 0:
            bad.append(f"reference.lr={self.lr!r} must be positive")
        if not 0 < self.lr_factor <= 1:
            bad.append(f"reference.lr_factor={self.lr_factor!r} must lie in (0, 1]; 1 keeps the rate constant")
        if bad:
            raise ConfigError("; ".join(bad))

    @classmethod
    def from_mapping(cls, values) -> ReferenceConfig:
        return build(cls, values, "reference")


@dataclass(frozen=True)
class CentralisedReference:
    encoders: dict[str, CrissCrossEncoder]
    anchors: np.ndarray
    best_epoch: int
    epochs_run: int
    val_balanced_accuracy: float
    final_lr: float  # below ReferenceConfig.lr by one lr_factor per validation plateau


def validation_windows(sites: list[SiteData]) -> list[tuple[str, torch.Tensor, np.ndarray]]:
    """(modality, windows, labels) of every site's validation subjects: what early stopping scores."""
    return [(d.site.modality, ds.x, ds.y.numpy()) for d in sites if (d.split == "val").any() for ds in [d.dataset("val")]]


def _val_score(encoders: dict[str, CrissCrossEncoder], anchors: torch.Tensor, val: list[tuple[str, torch.Tensor, np.ndarray]]) -> float:
    """Mean over modalities of the nearest-anchor balanced accuracy on the pooled validation windows."""
    from fedxalign.simulations.baseline import balanced_accuracy

    a = torch.nn.functional.normalize(anchors.detach(), dim=-1).cpu().numpy()
    scores = []
    for m in encoders:
        parts = [(embed(encoders[m], x), y) for mod, x, y in val if mod == m]
        if not parts:
            continue
        z, y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        scores.append(balanced_accuracy(y, (z @ a.T).argmax(1)))
    for e in encoders.values():
        e.train()
    return float(np.mean(scores)) if scores else float("nan")


def train_centralised(sites: list[SiteData], settings: RunSettings, cfg: ReferenceConfig = ReferenceConfig(),
                      seed: int = 0, progress: bool = True) -> CentralisedReference:
    torch.manual_seed(seed)
    device = pick_device(settings.train.device)
    modalities = sorted({d.site.modality for d in sites})
    encoders = {m: build_encoder(settings.model_for(m), seed=seed + i) for i, m in enumerate(modalities)}
    for m, e in encoders.items():
        if settings.model.pretrained:  # the reference starts where the sites start
            load_pretrained(e, pretrained_path(settings.model.pretrained, m))
        set_trainable(e, "all")
        e.to(device)
    n_classes = len(sites[0].vocabulary)
    anchors = torch.nn.Parameter(torch.nn.functional.normalize(torch.randn(n_classes, settings.model.embed_dim), dim=-1).to(device))
    params = [anchors, *[p for e in encoders.values() for p in e.parameters()]]
    opt = torch.optim.AdamW([p for p in params if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay)
    loaders = [(d.site.modality, torch.utils.data.DataLoader(for_windows(d.dataset("train"), encoders[d.site.modality]),
                                                             batch_size=cfg.batch_size, shuffle=True,
                                                             generator=torch.Generator().manual_seed(seed)))
               for d in sites if (d.split == "train").any()]
    val = validation_windows(sites)
    plateau = (torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=cfg.lr_factor, patience=cfg.lr_patience)
               if cfg.lr_factor < 1.0 else None)
    rng = np.random.default_rng(seed)
    best = (-np.inf, 0, None)
    epoch = 0
    for e in encoders.values():
        e.train()
    bar = tqdm(range(1, cfg.max_epochs + 1), desc="reference centralised (early stopping)", unit="epoch", disable=not progress)
    for epoch in bar:
        batches = [(m, b) for m, loader in loaders for b in loader]
        for k in rng.permutation(len(batches)):
            m, batch = batches[k]
            (x,), (inputs,), y = split_batch([b.to(device) for b in batch], 1)
            opt.zero_grad()
            loss = prototype_loss(encoders[m](x, inputs=inputs), y, anchors, settings.train.tau, None, settings.train.pull_weight)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, settings.privacy.max_grad_norm)
            opt.step()
        score = _val_score(encoders, anchors, val) if val else float(epoch)
        if plateau is not None:
            plateau.step(score)
        if score > best[0]:
            best = (score, epoch, copy.deepcopy(({m: e.state_dict() for m, e in encoders.items()}, anchors.detach().cpu())))
        bar.set_postfix(val=f"{score:.3f}", best=f"{best[0]:.3f}@{best[1]}")
        if epoch - best[1] >= cfg.patience:
            break
    bar.close()
    states, best_anchors = best[2]
    for m, e in encoders.items():
        e.load_state_dict(states[m])
        e.to("cpu").eval()
    return CentralisedReference(encoders, torch.nn.functional.normalize(best_anchors, dim=-1).numpy(), best[1], epoch, float(best[0]),
                                float(opt.param_groups[0]["lr"]))
