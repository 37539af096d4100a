"""Objectives in the shared latent space: prototype classifier, anchor pull, InfoNCE, MISA orthogonality."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def prototype_logits(z: torch.Tensor, anchors: torch.Tensor, tau: float, present: torch.Tensor | None = None) -> torch.Tensor:
    """Cosine similarity of unit embeddings to class anchors over temperature; absent classes get -inf."""
    logits = z @ F.normalize(anchors, dim=-1).T / tau
    if present is not None:
        logits = logits.masked_fill(~present.bool().unsqueeze(0), float("-inf"))
    return logits


def prototype_loss(z: torch.Tensor, y: torch.Tensor, anchors: torch.Tensor, tau: float,
                   present: torch.Tensor | None = None, pull_weight: float = 0.0) -> torch.Tensor:
    """Temperature-scaled cross-entropy against the anchors plus a pull of each z toward its class anchor.

    Samples whose class has no anchor yet (`present` False) are left out rather than given an infinite loss.
    """
    if present is not None:
        keep = present.bool()[y]
        if not keep.all():
            if not keep.any():
                return z.sum() * 0.0
            z, y = z[keep], y[keep]
    loss = F.cross_entropy(prototype_logits(z, anchors, tau, present), y)
    if pull_weight > 0:
        loss = loss + pull_weight * (1 - (z * F.normalize(anchors, dim=-1)[y]).sum(-1)).mean()
    return loss


def info_nce(a: torch.Tensor, b: torch.Tensor, tau: float, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric CLIP loss (Radford et al. 2021): row i of `a` matches row i of `b`, all other rows are negatives."""
    logits = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / tau
    target = torch.arange(len(a), device=a.device)
    per_row = 0.5 * (F.cross_entropy(logits, target, reduction="none") + F.cross_entropy(logits.T, target, reduction="none"))
    if weights is None:
        return per_row.mean()
    return (weights * per_row).sum() / weights.sum().clamp_min(1e-12)


def paired_contrastive(za: torch.Tensor, zb: torch.Tensor, y: torch.Tensor, neg_a: torch.Tensor, neg_b: torch.Tensor,
                       tau: float, present: torch.Tensor | None = None) -> torch.Tensor:
    """Sample-level alignment of a pair (Brant-X's sequence level) whose loss depends on that pair alone.

    For the EEG embedding `za[i]` the positive is its own ECG embedding `zb[i]` and the
    negatives are the ECG side's class anchors `neg_b` of the OTHER classes; symmetrically for
    `zb[i]`. In-batch negatives (CLIP's `info_nce`) would make pair i's gradient depend on every
    other pair of the batch, which DP-SGD's per-pair clipping cannot bound. The anchors are
    public to the site (the server's broadcast), so using them costs no privacy.
    """
    own = F.one_hot(y, neg_a.shape[0]).bool()
    if present is not None:
        own = own | ~present.bool().unsqueeze(0)

    def one_side(q: torch.Tensor, pos: torch.Tensor, negs: torch.Tensor) -> torch.Tensor:
        pos_logit = (q * pos).sum(-1, keepdim=True) / tau
        neg = (q @ F.normalize(negs, dim=-1).T / tau).masked_fill(own, float("-inf"))
        logits = torch.cat([pos_logit, neg], dim=1)
        return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))

    return 0.5 * (one_side(za, zb, neg_b) + one_side(zb, za, neg_a))


def patch_contrastive(sa: torch.Tensor, sb: torch.Tensor, tau: float) -> torch.Tensor:
    """Patch-level alignment of a pair (Brant-X's patch level) whose loss depends on that pair alone.

    `sa`, `sb` (pairs, spans, dim), unit norm: the same pair's time spans in each modality. Span
    t of one modality has span t of the other as its positive and the pair's OTHER spans as
    negatives, so it asks what happened when within the epoch, which the window's class cannot
    answer. Brant-X also takes other samples' patches as negatives; here those would couple the
    pairs of a DP-SGD batch, so the negatives stay inside the pair.
    """
    logits = sa @ sb.transpose(1, 2) / tau  # (pairs, spans, spans)
    target = torch.arange(sa.shape[1], device=sa.device).expand(sa.shape[0], -1)
    return 0.5 * (F.cross_entropy(logits.transpose(1, 2), target) + F.cross_entropy(logits, target))


def orthogonality(inv: torch.Tensor, spec: torch.Tensor) -> torch.Tensor:
    """MISA soft orthogonality (Hazarika et al. 2020, eq. 8) taken per sample: mean over i of (inv_i . spec_i)^2.

    MISA's batch form ||inv^T spec||_F^2 couples every pair of samples, so one sample's gradient
    would depend on the others and DP-SGD's per-sample clipping would not bound it. The
    per-sample form keeps each sample's invariant and specific parts orthogonal, which is the
    property the split needs, and each sample's loss depends on that sample alone.
    """
    return (inv * spec).sum(-1).pow(2).mean()
