"""One round at a site: restore its encoder and ledger, train privately, release prototypes, build the reply.

Everything the site keeps between rounds lives in its own `state_dir` (encoder weights,
privacy ledger), because every Flower message may run in a fresh process.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from client.training import TrainConfig, TrainReport, dp_train, embed
from shared.data.site import SiteData
from shared.models.encoder import CrissCrossEncoder, EncoderConfig, build_encoder
from shared.privacy.config import PrivacyConfig
from shared.privacy.ledger import BudgetExceeded, PrivacyLedger
from shared.privacy.release import PrototypeRelease, release_prototypes
from shared.protocol import WEIGHT_PREFIX, GlobalState, check_reply

log = logging.getLogger(__name__)

ENCODER_FILE = "encoder.pt"
LEDGER_FILE = "ledger.json"


@dataclass(frozen=True)
class SiteReply:
    arrays: dict[str, np.ndarray]
    metrics: dict[str, float]
    report: TrainReport | None


def site_seed(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")


def local_anchors(name: str, n_classes: int, dim: int) -> np.ndarray:
    """The site's own anchors before any alignment: random unit vectors seeded by the site's name."""
    rng = np.random.default_rng(site_seed(name))
    a = rng.standard_normal((n_classes, dim))
    return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)


def load_encoder(state_dir: Path, cfg: EncoderConfig, site_name: str, weights: dict[str, np.ndarray] | None) -> CrissCrossEncoder:
    """Shared weights from the server win; else the site's own last encoder; else a fresh, seeded one."""
    model = build_encoder(cfg, seed=site_seed(site_name))
    path = state_dir / ENCODER_FILE
    if weights is not None:
        model.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in weights.items()})
    elif path.is_file():
        model.load_state_dict(torch.load(path, weights_only=True))
    return model


def weight_shapes(cfg: EncoderConfig) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in build_encoder(cfg, seed=0).state_dict().items()}


def train_round(data: SiteData, state_dir: str | Path, model_cfg: EncoderConfig, train_cfg: TrainConfig,
                privacy_cfg: PrivacyConfig, glob: GlobalState, share_weights: bool = False,
                report_train_loss: bool = False, round_seed: int = 0, anchor_key: str | None = None) -> SiteReply:
    """Train on the train split, release privatised prototypes of it, and return the checked reply.

    Before the server has sent anchors the site trains against its own: random unit vectors
    seeded by `anchor_key` (the site's name by default; a federation passes the modality, so
    same-modality sites start in one space and cross-modal agreement is left to the alignment).
    """
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    n_classes, dim = len(data.vocabulary), model_cfg.embed_dim
    anchors = glob.anchors if glob.anchors is not None else local_anchors(anchor_key or data.site.name, n_classes, dim)
    present = glob.present if glob.present is not None else np.ones(n_classes, bool)
    head = torch.from_numpy(np.asarray(glob.head, np.float32)) if glob.head is not None else None
    model = load_encoder(state_dir, model_cfg, data.site.name, glob.weights)
    ledger = PrivacyLedger(state_dir / LEDGER_FILE, privacy_cfg)
    train = data.dataset("train")
    report = None
    try:
        report = dp_train(model, train, torch.from_numpy(anchors), torch.from_numpy(present), train_cfg, privacy_cfg, ledger, head)
    except BudgetExceeded as err:
        log.warning("site %s: %s", data.site.name, err)
    torch.save(model.state_dict(), state_dir / ENCODER_FILE)
    z = embed(model, train.x, head)
    rng = np.random.default_rng([site_seed(data.site.name), round_seed])
    try:
        release = release_prototypes(z, train.y.numpy(), n_classes, privacy_cfg.proto_clip, privacy_cfg.proto_noise_multiplier,
                                     privacy_cfg.min_count, rng, ledger if privacy_cfg.enabled else None)
    except BudgetExceeded as err:
        log.warning("site %s: prototype release refused: %s", data.site.name, err)
        release = PrototypeRelease(np.zeros((n_classes, dim), np.float32), np.zeros(n_classes, np.float32))
    arrays = {"prototypes": release.prototypes, "counts": release.counts}
    if share_weights:
        arrays |= {WEIGHT_PREFIX + k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    metrics = {
        "epsilon": ledger.epsilon(), "delta": privacy_cfg.delta,
        "epsilon_budget": privacy_cfg.epsilon if privacy_cfg.enabled else float("inf"),
        "dp_steps": float(report.steps if report else 0),
        "noise_multiplier": float(ledger.noise_multiplier or 0.0),
        "released_classes": float(release.present.sum()),
    }
    if report_train_loss and report is not None:
        metrics["train_loss"] = report.mean_loss
    check_reply(arrays, metrics, n_classes=n_classes, embed_dim=dim,
                weight_shapes=weight_shapes(model_cfg) if share_weights else None,
                forbidden_sizes={int((data.split == s).sum()) for s in ("train", "val", "test")} | {len(data.y)})
    return SiteReply(arrays, metrics, report)
