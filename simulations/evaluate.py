"""The researcher's view of a finished run: test embeddings of every site, within-modality and cross-modal scores.

Cross-modal transfer (the design's headline figure): a logistic regression fitted on all EEG
sites' test embeddings scores all ECG sites' test embeddings, and back; balanced accuracy.
Within a site two scores: the nearest class anchor (what the federation itself predicts) and a
linear probe fitted on the site's train and validation subjects, the protocol of the feature
baseline, so the two rows compare like with like.
"""

from __future__ import annotations

from typing import Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from fedxalign.client.node import state_dir
from fedxalign.client.site_round import load_encoder, load_paired_encoder, local_anchors
from fedxalign.client.training import embed
from fedxalign.server.alignment import alignment_score
from fedxalign.server.strategy import ServerState
from fedxalign.shared.data.paired import paired_node_of
from fedxalign.shared.data.site import SiteData
from fedxalign.shared.models.encoder import CrissCrossEncoder
from fedxalign.shared.runconfig import RunSettings
from fedxalign.simulations.baseline import balanced_accuracy, fit_readout


@dataclass
class SiteEmbeddings:
    site: str
    modality: str
    z: np.ndarray
    y: np.ndarray
    anchors: np.ndarray
    present: np.ndarray
    z_fit: np.ndarray  # train + validation subjects' embeddings, for the per-site linear probe
    y_fit: np.ndarray
    subjects_fit: np.ndarray  # their subjects: the probe's regularisation is chosen leaving one out at a time


def from_states(sites: list[SiteData], settings: RunSettings, state_root: Path, server: ServerState | None,
                anchor_key: str = "modality", paired: Collection[str] = ()) -> list[SiteEmbeddings]:
    """Embeddings from the model the federation ends with: the server's averaged encoder for the site's
    modality when weights are shared (else the site's own last encoder), projected by the server's head.
    A half of a paired node (named in `paired`) keeps its encoder in the node's folder, one file per modality."""
    out = []
    n_classes = len(sites[0].vocabulary)
    for d in sites:
        m = d.site.modality
        node = paired_node_of(d.site.name, paired)
        final = server.weights.get(m) if server is not None else None
        if node is not None:
            model = load_paired_encoder(state_dir(state_root, node), settings.model_for(m), node, final)
        else:
            model = load_encoder(state_dir(state_root, d.site.name), settings.model_for(m), d.site.name, final)
        head = torch.from_numpy(server.heads[m]) if server is not None and m in server.heads else None
        if server is not None and m in server.anchors:
            anchors, present = server.anchors[m], server.present[m]
        else:
            key = m if anchor_key == "modality" else (node or d.site.name)  # a paired node's one space (inprocess.local_paired_anchors)
            anchors, present = local_anchors(key, n_classes, settings.model.embed_dim), np.ones(n_classes, bool)
        out.append(_site_embeddings(d, model, head, anchors, present))
    return out


def _site_embeddings(d: SiteData, model: CrissCrossEncoder, head: torch.Tensor | None, anchors: np.ndarray,
                     present: np.ndarray) -> SiteEmbeddings:
    test = d.dataset("test")
    fit = d.dataset(None)
    keep = d.split != "test"
    return SiteEmbeddings(d.site.name, d.site.modality, embed(model, test.x, head), test.y.numpy(), anchors, present,
                          embed(model, fit.x[torch.from_numpy(keep)], head), fit.y.numpy()[keep], np.asarray(d.subject)[keep])


def from_centralised(sites: list[SiteData], encoders: dict[str, CrissCrossEncoder], anchors: np.ndarray) -> list[SiteEmbeddings]:
    return [_site_embeddings(d, encoders[d.site.modality], None, anchors, np.ones(len(anchors), bool)) for d in sites]


def within_site(e: SiteEmbeddings) -> float:
    if len(e.y) == 0:
        return float("nan")
    scores = e.z @ (e.anchors / np.linalg.norm(e.anchors, axis=1, keepdims=True)).T
    scores[:, ~e.present] = -np.inf
    return balanced_accuracy(e.y, scores.argmax(1))


def probe_predictions(e: SiteEmbeddings) -> tuple[np.ndarray, np.ndarray]:
    """(truth, prediction) of the site's scored test windows, in order, by a logistic regression fitted on its
    train+val embeddings, its C chosen leaving one subject out (the feature baseline's protocol and windows:
    `baseline.readout_predictions`)."""
    present = np.unique(e.y_fit)
    keep = np.isin(e.y, present)
    if len(present) < 2 or not keep.any():
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    clf = fit_readout(e.z_fit, e.y_fit, e.subjects_fit)
    return e.y[keep], clf.predict(e.z[keep])


def pooled(predictions: dict[str, tuple[np.ndarray, np.ndarray]], sites: Collection[str]) -> float:
    """One balanced accuracy over the named sites' test windows, each window predicted by its own site's probe.

    A site's own score rests on its one or two test subjects, where the rarest stage often has one
    to three windows, so one window moves it by up to a fifth; pooled, each stage has the windows of
    every site, and the modality's figure moves far less."""
    parts = [predictions[s] for s in sites if s in predictions and len(predictions[s][0])]
    if not parts:
        return float("nan")
    return balanced_accuracy(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))


def _pooled_columns(predictions: dict[str, tuple[np.ndarray, np.ndarray]], modality: dict[str, str]) -> dict:
    """A methods row's pooled probe per modality, and each site's probe predictions for summary.json (so a benchmark
    can pool them or bootstrap a margin later)."""
    return {
        "probe_pooled_eeg": pooled(predictions, [s for s in predictions if modality[s] == "eeg"]),
        "probe_pooled_ecg": pooled(predictions, [s for s in predictions if modality[s] == "ecg"]),
        "probe_predictions_site": {s: {"modality": modality[s], "y": [int(v) for v in y], "pred": [int(v) for v in p]}
                                   for s, (y, p) in predictions.items()},
    }


def transfer(src: list[SiteEmbeddings], dst: list[SiteEmbeddings]) -> float:
    """Balanced accuracy on `dst` of a logistic regression fitted on `src` (pooled test embeddings)."""
    xs, ys = np.concatenate([e.z for e in src]), np.concatenate([e.y for e in src])
    xd, yd = np.concatenate([e.z for e in dst]), np.concatenate([e.y for e in dst])
    if len(np.unique(ys)) < 2 or len(yd) == 0:
        return float("nan")
    clf = LogisticRegression(max_iter=2000, class_weight="balanced").fit(xs, ys)
    return balanced_accuracy(yd, clf.predict(xd))


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
    predictions = {e.site: probe_predictions(e) for e in embs}
    probe = {s: balanced_accuracy(y, p) for s, (y, p) in predictions.items()}
    return {
        "eeg_to_ecg": transfer(eeg, ecg),
        "ecg_to_eeg": transfer(ecg, eeg),
        "within_eeg": _mean([within[e.site] for e in eeg]),
        "within_ecg": _mean([within[e.site] for e in ecg]),
        "probe_eeg": _mean([probe[e.site] for e in eeg]),
        "probe_ecg": _mean([probe[e.site] for e in ecg]),
        **_pooled_columns(predictions, {e.site: e.modality for e in embs}),
        "alignment_score": alignment_score(mc, me, pe & pc),
        "within_site": within,
        "probe_site": probe,
    }


def feature_row(results: list) -> dict:
    """The feature baseline (simulations.baseline) as a methods row: a per-site classifier, so only the probe columns."""
    probe = {r.site: r.balanced_accuracy for r in results}
    predictions = {r.site: (r.y_test, r.pred_test) for r in results}
    nan = float("nan")
    return {"eeg_to_ecg": nan, "ecg_to_eeg": nan, "within_eeg": nan, "within_ecg": nan,
            "probe_eeg": _mean([r.balanced_accuracy for r in results if r.modality == "eeg"]),
            "probe_ecg": _mean([r.balanced_accuracy for r in results if r.modality == "ecg"]),
            **_pooled_columns(predictions, {r.site: r.modality for r in results}),
            "alignment_score": nan, "within_site": {}, "probe_site": probe}


def _mean(values: list[float]) -> float:
    values = [v for v in values if np.isfinite(v)]
    return float(np.mean(values)) if values else float("nan")
