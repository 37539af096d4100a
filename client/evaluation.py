"""A site scores its held-out split with the prototype classifier in the shared space; only aggregates leave."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score

from client.site_round import ENCODER_FILE, load_encoder, local_anchors
from client.training import embed
from shared.data.site import SiteData
from shared.models.encoder import EncoderConfig
from shared.protocol import GlobalState


def evaluate_site(data: SiteData, state_dir: Path, model_cfg: EncoderConfig, glob: GlobalState, split: str = "test",
                  anchor_key: str | None = None) -> dict[str, float]:
    """Accuracy and balanced accuracy of nearest-anchor classification on `split` (empty split: n_eval 0)."""
    mask = data.split == split
    if not mask.any():
        return {"accuracy": float("nan"), "balanced_accuracy": float("nan"), "n_eval": 0.0}
    n_classes = len(data.vocabulary)
    # the site's own encoder after its last training; before any, the broadcast weights (or a fresh one)
    own = (state_dir / ENCODER_FILE).is_file()
    model = load_encoder(state_dir, model_cfg, data.site.name, None if own else glob.weights)
    anchors = glob.anchors if glob.anchors is not None else local_anchors(anchor_key or data.site.name, n_classes, model_cfg.embed_dim)
    present = glob.present if glob.present is not None else np.ones(n_classes, bool)
    head = torch.from_numpy(np.asarray(glob.head, np.float32)) if glob.head is not None else None
    ds = data.dataset(split)
    z = embed(model, ds.x, head)
    scores = z @ (anchors / np.linalg.norm(anchors, axis=1, keepdims=True)).T
    scores[:, ~present] = -np.inf
    pred, y = scores.argmax(1), ds.y.numpy()
    return {"accuracy": float((pred == y).mean()), "balanced_accuracy": float(balanced_accuracy_score(y, pred)), "n_eval": float(len(y))}
