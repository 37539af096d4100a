"""A site scores its held-out split with the prototype classifier in the shared space; only aggregates leave, and only by policy.

The site evaluates with what it trained with in its last round (its own encoder and the
anchors and head it received then, kept in its state folder), never with arrays an evaluate
message carries: otherwise a coordinator could send crafted anchors and read the held-out
labels back from the scores. The same state always gives the same scores, so asking again
tells nothing new.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score

from fedxalign.client.site_round import (ENCODER_FILE, LAST_GLOBAL_FILE, PAIRED_ENCODER_FILES, load_encoder, load_paired_encoder,
                                         local_anchors)
from fedxalign.client.training import embed
from fedxalign.shared.data.paired import MODALITIES, PairedSiteData
from fedxalign.shared.data.site import SiteData
from fedxalign.shared.models.encoder import EncoderConfig
from fedxalign.shared.models.fusion import FusionConfig, anchor_scores


def evaluate_site(data: SiteData, state_dir: Path, model_cfg: EncoderConfig, split: str = "test",
                  anchor_key: str | None = None) -> dict[str, float]:
    """Accuracy and balanced accuracy of nearest-anchor classification on `split`; empty before the first round or with no such split."""
    mask = data.split == split
    if not mask.any() or not (state_dir / ENCODER_FILE).is_file():
        return {}
    n_classes = len(data.vocabulary)
    model = load_encoder(state_dir, model_cfg, data.site.name, None)
    anchors = local_anchors(anchor_key or data.site.name, n_classes, model_cfg.embed_dim)
    present, head = np.ones(n_classes, bool), None
    if (state_dir / LAST_GLOBAL_FILE).is_file():
        with np.load(state_dir / LAST_GLOBAL_FILE) as npz:
            anchors, present = npz["anchors"], npz["present"].astype(bool)
            head = torch.from_numpy(npz["head"]) if "head" in npz.files else None
    ds = data.dataset(split)
    z = embed(model, ds.x, head)
    scores = z @ (anchors / np.linalg.norm(anchors, axis=1, keepdims=True)).T
    scores[:, ~present] = -np.inf
    pred, y = scores.argmax(1), ds.y.numpy()
    return {"accuracy": float((pred == y).mean()), "balanced_accuracy": float(balanced_accuracy_score(y, pred))}


def evaluate_paired(data: PairedSiteData, state_dir: Path, model_cfgs: Mapping[str, EncoderConfig], fusion_cfg: FusionConfig,
                    split: str = "test") -> dict[str, float]:
    """A paired site's fused score on `split` (both modalities, the fusion decoder), from its own last state only."""
    from fedxalign.client.paired_round import load_fusion

    mask = data.split == split
    files = [state_dir / f for f in PAIRED_ENCODER_FILES.values()]
    if not mask.any() or not fusion_cfg.enabled or not all(f.is_file() for f in files) or not (state_dir / LAST_GLOBAL_FILE).is_file():
        return {}
    with np.load(state_dir / LAST_GLOBAL_FILE) as npz:
        heads = {m: torch.from_numpy(npz[f"{m}.head"]) if f"{m}.head" in npz.files else None for m in MODALITIES}
        anchors = {m: (torch.from_numpy(npz[f"{m}.anchors"]), torch.from_numpy(npz[f"{m}.present"] > 0)) for m in MODALITIES}
    ds = data.dataset(split)
    s = {m: anchor_scores(torch.from_numpy(embed(load_paired_encoder(state_dir, model_cfgs[m], data.name, None),
                                                 ds.x_eeg if m == "eeg" else ds.x_ecg, heads[m])), *anchors[m]) for m in MODALITIES}
    fusion = load_fusion(state_dir, data.name, len(data.vocabulary), fusion_cfg, None)
    pred, y = fusion.predict(s["eeg"], s["ecg"], "masked").argmax(1), ds.y.numpy()
    return {"accuracy": float((pred == y).mean()), "balanced_accuracy": float(balanced_accuracy_score(y, pred))}
