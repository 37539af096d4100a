"""The fusion table: each missing-modality strategy on held-out subjects, with both modalities, EEG only and ECG only.

Paired sites' test pairs give the three conditions; the single-modality sites' test windows
are "missing" the other modality by construction (columns `EEG sites`, `ECG sites`). The row
`encoder alone` is the federation's own single-modality prediction (nearest class anchor),
the bar that fusion with both must beat and that learnt masking must keep 95% of.
Everything is scored on the model the run ends with: the server's averaged encoders, heads
and fusion head (a site's own when the run shares no weights).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fedxalign.client.node import state_dir
from fedxalign.client.paired_round import load_fusion
from fedxalign.client.site_round import load_encoder, load_paired_encoder
from fedxalign.client.training import embed
from fedxalign.server.strategy import ServerState
from fedxalign.shared.data.paired import MODALITIES, PairedSiteData, paired_node_of
from fedxalign.shared.data.site import SiteData
from fedxalign.shared.models.fusion import CONDITIONS, STRATEGIES, anchor_scores
from fedxalign.shared.runconfig import RunSettings
from fedxalign.simulations.baseline import balanced_accuracy

COLUMNS = (("both", "both"), ("eeg", "EEG only"), ("ecg", "ECG only"), ("eeg_sites", "EEG sites"), ("ecg_sites", "ECG sites"))
ALONE = "encoder alone"


@dataclass
class FusionTable:
    rows: dict[str, dict[str, float]]  # strategy (or ALONE) -> column -> balanced accuracy
    n_pairs: int  # held-out test pairs scored

    def targets(self) -> dict[str, float]:
        """The issue's targets as measured ratios/differences (report them whatever they are)."""
        alone, masked, zero = self.rows[ALONE], self.rows["masked"], self.rows["zero"]
        best_single = max(alone["eeg"], alone["ecg"])
        kept = lambda m: masked[m] / alone[m] if alone[m] > 0 else float("nan")  # noqa: E731
        return {"fusion_both_minus_best_single": self.rows["zero"]["both"] - best_single,
                "masked_both_minus_best_single": masked["both"] - best_single,
                "masked_kept_eeg_only": kept("eeg"), "masked_kept_ecg_only": kept("ecg"),
                "masked_minus_zero_eeg_only": masked["eeg"] - zero["eeg"],
                "masked_minus_zero_ecg_only": masked["ecg"] - zero["ecg"]}


def _nearest_anchor(z: np.ndarray, y: np.ndarray, anchors: np.ndarray, present: np.ndarray) -> float:
    scores = z @ (anchors / np.linalg.norm(anchors, axis=1, keepdims=True)).T
    scores[:, ~present] = -np.inf
    return balanced_accuracy(y, scores.argmax(1))


def fusion_table(paired: list[PairedSiteData], sites: list[SiteData], settings: RunSettings, state_root: Path,
                 server: ServerState) -> FusionTable:
    n_classes = len(settings.data.vocabulary)
    heads = {m: torch.from_numpy(server.heads[m]) if m in server.heads else None for m in MODALITIES}
    anchors = {m: (server.anchors[m], server.present[m]) for m in MODALITIES}
    tensors = {m: (torch.from_numpy(a).float(), torch.from_numpy(p)) for m, (a, p) in anchors.items()}
    scores = lambda z, m: anchor_scores(z, *tensors[m])  # noqa: E731 - what the fusion head reads
    # mean imputation: the scores of the modality's mean anchor (the global mean of its released classes)
    means = {m: scores(tensors[m][0][tensors[m][1]].mean(0, keepdim=True), m)[0] for m in MODALITIES}
    rows: dict[str, dict[str, list[float]]] = {r: {c: [] for c, _ in COLUMNS} for r in (*STRATEGIES, ALONE)}
    n_pairs = 0
    own = {p.name: load_fusion(state_dir(state_root, p.name), p.name, n_classes, settings.fusion, None)
           for p in paired} if not server.fusion else {}
    # the head single-modality sites would download: the server's average, else the first paired site's own
    shared_head = load_fusion(state_root, "server", n_classes, settings.fusion, server.fusion) if server.fusion else own[paired[0].name]
    for p in paired:
        folder = state_dir(state_root, p.name)
        enc = {m: load_paired_encoder(folder, settings.model_for(m), p.name, server.weights.get(m)) for m in MODALITIES}
        fusion = own.get(p.name, shared_head)
        test = p.dataset("test")
        y = test.y.numpy()
        n_pairs += len(y)
        z = {"eeg": torch.from_numpy(embed(enc["eeg"], test.x_eeg, heads["eeg"])),
             "ecg": torch.from_numpy(embed(enc["ecg"], test.x_ecg, heads["ecg"]))}
        for strategy in STRATEGIES:
            for cond in CONDITIONS:
                ze = scores(z["eeg"], "eeg") if cond != "ecg" else None
                zc = scores(z["ecg"], "ecg") if cond != "eeg" else None
                pred = fusion.predict(ze, zc, strategy, means["eeg"], means["ecg"]).argmax(1)
                rows[strategy][cond].append(balanced_accuracy(y, pred))
        for m in MODALITIES:
            rows[ALONE][m].append(_nearest_anchor(z[m].numpy(), y, *anchors[m]))
    for d in sites:
        m = d.site.modality
        test = d.dataset("test")
        if not len(test) or paired_node_of(d.site.name, {p.name for p in paired}):
            continue  # a paired site's halves are scored above, as pairs
        model = load_encoder(state_dir(state_root, d.site.name), settings.model_for(m), d.site.name, server.weights.get(m))
        zm = torch.from_numpy(embed(model, test.x, heads[m]))
        y = test.y.numpy()
        for strategy in STRATEGIES:
            sm = scores(zm, m)
            pred = shared_head.predict(sm if m == "eeg" else None, sm if m == "ecg" else None, strategy, means["eeg"], means["ecg"]).argmax(1)
            rows[strategy][f"{m}_sites"].append(balanced_accuracy(y, pred))
        rows[ALONE][f"{m}_sites"].append(_nearest_anchor(zm.numpy(), y, *anchors[m]))
    return FusionTable({r: {c: float(np.mean(v)) if v else float("nan") for c, v in cols.items()} for r, cols in rows.items()}, n_pairs)


def format_table(t: FusionTable) -> str:
    head = f"{'strategy for a missing modality':34s} " + " ".join(f"{label:>10s}" for _, label in COLUMNS)
    lines = [head, "-" * len(head)]
    labels = {"zero": "1 zero imputation", "mean": "2 mean imputation (global anchors)",
              "reconstruct": "3 cross-modal reconstruction", "masked": "4 learnt masking (modality dropout)",
              ALONE: "single-modality encoder (anchor)"}
    for r, cols in t.rows.items():
        lines.append(f"{labels[r]:34s} " + " ".join(f"{cols[c]:10.3f}" if cols[c] == cols[c] else f"{'-':>10s}" for c, _ in COLUMNS))
    return "\n".join(lines)
