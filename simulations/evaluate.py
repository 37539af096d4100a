"""The researcher's view of a finished run: test embeddings of every site, within-modality and cross-modal scores.

Cross-modal transfer (the design's headline figure): a logistic regression fitted on all EEG
sites' test embeddings scores all ECG sites' test embeddings, and back; balanced accuracy.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score

from client.node import state_dir
from client.site_round import load_encoder, local_anchors
from client.training import embed
from server.alignment import alignment_score
from server.strategy import ServerState
from shared.data.site import SiteData
from shared.models.encoder import CrissCrossEncoder
from shared.runconfig import RunSettings


@dataclass
class SiteEmbeddings:
    site: str
    modality: str
    z: np.ndarray
    y: np.ndarray
    anchors: np.ndarray
    present: np.ndarray


def from_states(sites: list[SiteData], settings: RunSettings, state_root: Path, server: ServerState | None,
                anchor_key: str = "modality") -> list[SiteEmbeddings]:
    """Embeddings from each site's saved encoder, projected by the server's head for its modality when there is one."""
    out = []
    n_classes = len(sites[0].vocabulary)
    for d in sites:
        m = d.site.modality
        model = load_encoder(state_dir(state_root, d.site.name), settings.model_for(m), d.site.name, None)
        head = torch.from_numpy(server.heads[m]) if server is not None and m in server.heads else None
        if server is not None and m in server.anchors:
            anchors, present = server.anchors[m], server.present[m]
        else:
            key = m if anchor_key == "modality" else d.site.name
            anchors, present = local_anchors(key, n_classes, settings.model.embed_dim), np.ones(n_classes, bool)
        ds = d.dataset("test")
        out.append(SiteEmbeddings(d.site.name, m, embed(model, ds.x, head), ds.y.numpy(), anchors, present))
    return out


def from_centralised(sites: list[SiteData], encoders: dict[str, CrissCrossEncoder], anchors: np.ndarray) -> list[SiteEmbeddings]:
    out = []
    for d in sites:
        ds = d.dataset("test")
        out.append(SiteEmbeddings(d.site.name, d.site.modality, embed(encoders[d.site.modality], ds.x), ds.y.numpy(),
                                  anchors, np.ones(len(anchors), bool)))
    return out


def _bacc(y: np.ndarray, pred: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(balanced_accuracy_score(y, pred))


def within_site(e: SiteEmbeddings) -> float:
    if len(e.y) == 0:
        return float("nan")
    scores = e.z @ (e.anchors / np.linalg.norm(e.anchors, axis=1, keepdims=True)).T
    scores[:, ~e.present] = -np.inf
    return _bacc(e.y, scores.argmax(1))


def transfer(src: list[SiteEmbeddings], dst: list[SiteEmbeddings]) -> float:
    """Balanced accuracy on `dst` of a logistic regression fitted on `src` (pooled test embeddings)."""
    xs, ys = np.concatenate([e.z for e in src]), np.concatenate([e.y for e in src])
    xd, yd = np.concatenate([e.z for e in dst]), np.concatenate([e.y for e in dst])
    if len(np.unique(ys)) < 2 or len(yd) == 0:
        return float("nan")
    clf = LogisticRegression(max_iter=2000, class_weight="balanced").fit(xs, ys)
    return _bacc(yd, clf.predict(xd))


def class_means(embs: list[SiteEmbeddings], n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    z, y = np.concatenate([e.z for e in embs]), np.concatenate([e.y for e in embs])
    means = np.zeros((n_classes, z.shape[1]))
    present = np.zeros(n_classes, bool)
    for c in range(n_classes):
        if (y == c).any():
            means[c], present[c] = z[y == c].mean(0), True
    return means, present


def evaluate(embs: list[SiteEmbeddings], n_classes: int) -> dict:
    eeg = [e for e in embs if e.modality == "eeg" and len(e.y)]
    ecg = [e for e in embs if e.modality == "ecg" and len(e.y)]
    me, pe = class_means(eeg, n_classes)
    mc, pc = class_means(ecg, n_classes)
    within = {e.site: within_site(e) for e in embs}
    return {
        "eeg_to_ecg": transfer(eeg, ecg),
        "ecg_to_eeg": transfer(ecg, eeg),
        "within_eeg": float(np.nanmean([within[e.site] for e in eeg])),
        "within_ecg": float(np.nanmean([within[e.site] for e in ecg])),
        "alignment_score": alignment_score(mc, me, pe & pc),
        "within_site": within,
    }
