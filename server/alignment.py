"""Semantic-level cross-modal alignment on prototypes (Brant-X, Zhang et al. KDD 2024, sec. 3.3).

EEG is the anchor modality. For every other modality m the server fits a linear map G_m
(initialised at identity, kept near-orthogonal) so that, class by class, the mapped prototypes
match the anchors under a CLIP-style InfoNCE over classes (temperature tau, each class's term
weighted by its noisy count); the anchors themselves start at the EEG prototypes and are
refined by the same objective while being held near them. Only prototypes are used: no
sample ever reaches the server.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from fedxalign.server.aggregation import ModalityPrototypes
from fedxalign.shared.losses import info_nce
from fedxalign.shared.runconfig import AlignConfig


CHECK_EVERY = 20  # steps between convergence checks of the alignment fit


@dataclass(frozen=True)
class AlignResult:
    anchors: np.ndarray  # (C, d) unit rows
    maps: dict[str, np.ndarray]  # modality -> (d, d), applied as p @ G.T
    score_before: float
    score_after: float


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def alignment_score(a: np.ndarray, b: np.ndarray, present: np.ndarray) -> float:
    """Mean same-class cosine minus mean different-class cosine between two prototype sets (classes in `present`)."""
    idx = np.flatnonzero(present)
    if len(idx) < 2:
        return float("nan")
    cos = _unit(a[idx]) @ _unit(b[idx]).T
    same = np.diag(cos).mean()
    diff = cos[~np.eye(len(idx), dtype=bool)].mean()
    return float(same - diff)


def mean_cross_score(anchor: ModalityPrototypes, others: dict[str, ModalityPrototypes], maps: dict[str, np.ndarray] | None = None) -> float:
    scores = []
    for m, proto in others.items():
        mapped = proto.prototypes @ maps[m].T if maps else proto.prototypes
        scores.append(alignment_score(mapped, anchor.prototypes, proto.present & anchor.present))
    scores = [s for s in scores if np.isfinite(s)]
    return float(np.mean(scores)) if scores else float("nan")


def align_prototypes(by_modality: dict[str, ModalityPrototypes], cfg: AlignConfig, seed: int = 0,
                     previous: np.ndarray | None = None) -> AlignResult:
    """Fit anchors and per-modality maps; needs the anchor modality and at least one other with >= 2 shared classes.

    A class no modality released this round keeps its `previous` anchor; only a class never
    seen at all starts from a random unit vector.
    """
    anchor_mod = cfg.anchor_modality if cfg.anchor_modality in by_modality else sorted(by_modality)[0]
    anchor = by_modality[anchor_mod]
    others = {m: p for m, p in by_modality.items() if m != anchor_mod}
    d = anchor.prototypes.shape[1]
    identity = {m: np.eye(d, dtype=np.float32) for m in by_modality}
    before = mean_cross_score(anchor, others)
    # classes the anchor modality did not release start from another modality's prototype
    init = anchor.prototypes.copy()
    for p in others.values():
        fill = ~anchor.present & p.present & ~np.any(init != 0, axis=1)
        init[fill] = p.prototypes[fill]
    gen = torch.Generator().manual_seed(seed)
    missing = ~np.any(init != 0, axis=1)
    if previous is not None and previous.shape == init.shape:
        init[missing] = previous[missing]
        missing = ~np.any(init != 0, axis=1)
    init[missing] = torch.randn(int(missing.sum()), d, generator=gen).numpy()
    init = _unit(init)
    if not others or not cfg.enabled:
        return AlignResult(init.astype(np.float32), identity, before, before)
    with _one_thread():
        fitted = _fit(anchor, others, init, cfg)
    return _result(anchor, others, identity, before, *fitted)


@contextlib.contextmanager
def _one_thread():
    """The fit is hundreds of steps on 5 x 32 tensors: thread hand-offs cost more than the arithmetic (3x, measured)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _fit(anchor: ModalityPrototypes, others: dict[str, ModalityPrototypes], init: np.ndarray, cfg: AlignConfig):
    d = init.shape[1]
    target = torch.tensor(init, dtype=torch.float32)
    anchors = torch.nn.Parameter(target.clone())
    maps = {m: torch.nn.Parameter(torch.eye(d)) for m in others}
    opt = torch.optim.Adam([anchors, *maps.values()], lr=cfg.lr)
    eye = torch.eye(d)
    # everything that does not change during the fit is built once (the loop used to rebuild it every step)
    anchor_idx = torch.tensor(np.flatnonzero(anchor.present))
    anchor_p = torch.tensor(anchor.prototypes, dtype=torch.float32)[anchor_idx]
    anchor_w = torch.tensor(anchor.counts[anchor.present], dtype=torch.float32)
    terms = [(m, torch.tensor(np.flatnonzero(p.present)), torch.tensor(p.prototypes[p.present], dtype=torch.float32),
              torch.tensor(p.counts[p.present], dtype=torch.float32)) for m, p in others.items() if p.present.sum() >= 2]
    last = math.inf
    for step in range(cfg.steps):
        opt.zero_grad()
        a = F.normalize(anchors, dim=-1)
        loss = cfg.anchor_weight * (a - target).pow(2).sum(-1).mean()
        if len(anchor_idx) >= 2:
            loss = loss + info_nce(anchor_p, a[anchor_idx], cfg.tau, anchor_w)
        for m, idx, protos, w in terms:
            loss = loss + info_nce(protos @ maps[m].T, a[idx], cfg.tau, w)
            loss = loss + cfg.orth_weight * (maps[m].T @ maps[m] - eye).pow(2).sum() / d
        loss.backward()
        opt.step()
        if (step + 1) % CHECK_EVERY == 0:  # converged: the loss no longer moves
            value = float(loss.detach())
            if last - value < cfg.tol * max(1.0, abs(value)):
                break
            last = value
    return anchors, maps


def _result(anchor: ModalityPrototypes, others: dict[str, ModalityPrototypes], identity: dict[str, np.ndarray], before: float,
            anchors: torch.Tensor, maps: dict[str, torch.Tensor]) -> AlignResult:
    out_maps = identity | {m: g.detach().numpy().astype(np.float32) for m, g in maps.items()}
    out_anchors = _unit(anchors.detach().numpy()).astype(np.float32)
    return AlignResult(out_anchors, out_maps, before, mean_cross_score(anchor, others, out_maps))
