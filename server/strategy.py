"""The coordinator's round logic, free of transport: aggregate per modality, align, build the next broadcast.

Used unchanged by the Flower ServerApp and by in-process drivers (baselines, benchmarks).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fedxalign.server.aggregation import ModalityPrototypes, aggregate_prototypes, aggregate_weights, cap_counts
from fedxalign.server.alignment import AlignResult, align_prototypes, mean_cross_score
from fedxalign.shared.atomic_files import write_npz
from fedxalign.shared.protocol import FUSION_PREFIX, MODALITIES, PAIRED, WEIGHT_PREFIX, GlobalState, pack_global, pack_paired_global
from fedxalign.shared.runconfig import RunSettings

log = logging.getLogger(__name__)


@dataclass
class SiteResult:
    """One site's train reply as the server sees it (plus the public metadata from the query)."""

    site: str
    modality: str
    arrays: dict[str, np.ndarray]
    metrics: dict[str, float]

    @property
    def bytes_sent(self) -> int:
        return int(sum(np.asarray(a).nbytes for a in self.arrays.values()) + 8 * len(self.metrics))

    @property
    def prototype_bytes(self) -> int:
        return int(sum(np.asarray(a).nbytes for k, a in self.arrays.items() if not k.startswith(WEIGHT_PREFIX)))


@dataclass
class ServerState:
    """Everything the coordinator holds between rounds; saved as a checkpoint every round."""

    round: int = 0
    anchors: dict[str, np.ndarray] = field(default_factory=dict)
    present: dict[str, np.ndarray] = field(default_factory=dict)
    heads: dict[str, np.ndarray] = field(default_factory=dict)
    weights: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    fingerprint: str = ""  # RunSettings.fingerprint() of the run that wrote it
    fusion: dict[str, np.ndarray] = field(default_factory=dict)  # the paired sites' averaged fusion head

    def global_for(self, modality: str, share_weights: bool) -> GlobalState:
        if modality not in self.anchors:
            return GlobalState(head=self.heads.get(modality), weights=self.weights.get(modality) if share_weights else None)
        return GlobalState(anchors=self.anchors[modality], present=self.present[modality], head=self.heads.get(modality),
                           weights=self.weights.get(modality) if share_weights else None)

    def broadcast_for(self, kind: str, share_weights: bool) -> dict[str, np.ndarray]:
        """The arrays a node of `kind` (a modality, or `paired`: both modalities and the fusion head) receives."""
        if kind == PAIRED:
            return pack_paired_global({m: self.global_for(m, share_weights) for m in MODALITIES},
                                      self.fusion if share_weights else None)
        return pack_global(self.global_for(kind, share_weights))

    def save(self, path: Path) -> None:
        arrays = {f"anchors/{m}": a for m, a in self.anchors.items()} | {f"present/{m}": p for m, p in self.present.items()}
        arrays |= {f"heads/{m}": h for m, h in self.heads.items()}
        arrays |= {f"weights/{m}/{k}": v for m, w in self.weights.items() for k, v in w.items()}
        arrays |= {f"fusion/{k}": v for k, v in self.fusion.items()}
        write_npz(path, {"round": np.array(self.round), "fingerprint": np.array(self.fingerprint), **arrays})

    @classmethod
    def load(cls, path: Path) -> ServerState:
        state = cls()
        with np.load(path) as npz:
            state.round = int(npz["round"])
            state.fingerprint = str(npz["fingerprint"]) if "fingerprint" in npz.files else ""
            for key in npz.files:
                kind, _, rest = key.partition("/")
                if kind == "weights":
                    m, _, name = rest.partition("/")
                    state.weights.setdefault(m, {})[name] = npz[key]
                elif kind == "fusion":
                    state.fusion[rest] = npz[key]
                elif kind in ("anchors", "present", "heads"):
                    getattr(state, kind)[rest] = npz[key].astype(bool) if kind == "present" else npz[key]
        return state


@dataclass(frozen=True)
class RoundSummary:
    round: int
    n_sites: int
    sites: list[str]
    alignment_before: float
    alignment_after: float
    classes_per_modality: dict[str, int]
    train_loss: float
    head_condition: dict[str, float] = field(default_factory=dict)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def polar_factor(m: np.ndarray) -> np.ndarray:
    """The orthogonal matrix nearest to `m` (U V^T of its SVD).

    Each round's map is only held near-orthogonal by a penalty; multiplied round after round,
    the small shears compound into a nearly singular head that squeezes a modality's space onto
    few directions (seen with DP off: singular values 2.6 ... 0.003). Keeping the orthogonal
    factor makes the head a rotation, which keeps every cosine between embeddings.
    """
    u, _, vt = np.linalg.svd(np.asarray(m, np.float64))
    return (u @ vt).astype(np.float32)


def damped(fitted: np.ndarray, previous: np.ndarray, keep: float) -> np.ndarray:
    """`keep` of the previous value and the rest of this round's fit.

    Each round's fit chases the noise of that round's released prototypes; a head compounded
    from undamped fits walks at random and the sites' encoders chase it. Post-processing of
    released values, so it costs no privacy.
    """
    return ((1.0 - keep) * np.asarray(fitted, np.float64) + keep * np.asarray(previous, np.float64)).astype(np.float32)


def condition_number(m: np.ndarray) -> float:
    s = np.linalg.svd(np.asarray(m, np.float64), compute_uv=False)
    return float(s[0] / max(s[-1], 1e-300))


def split_paired(results: list[SiteResult]) -> tuple[list[SiteResult], list[SiteResult]]:
    """A paired site's reply as one result per modality (its prototypes share the one released count), plus
    the paired replies' fusion heads as results of their own (arrays `fusion.*` and the counts)."""
    out, fusion = [], []
    for r in results:
        if r.modality != PAIRED:
            out.append(r)
            continue
        for m in MODALITIES:
            arrays = {"prototypes": r.arrays[f"{m}.prototypes"], "counts": r.arrays["counts"]}
            arrays |= {k[len(m) + 1:]: v for k, v in r.arrays.items() if k.startswith(f"{m}.{WEIGHT_PREFIX}")}
            out.append(SiteResult(r.site, m, arrays, r.metrics))
        if any(k.startswith(FUSION_PREFIX) for k in r.arrays):
            fusion.append(r)
    return out, fusion


def aggregate_round(state: ServerState, results: list[SiteResult], settings: RunSettings) -> tuple[ServerState, RoundSummary]:
    """Aggregate one round's replies into the next state. Sites of one modality never mix with another's;
    a paired site counts in each of its two modalities, and its fusion head among paired sites only."""
    fed, align = settings.federation, settings.align
    nodes = results
    results, fusions = split_paired(results)
    by_mod: dict[str, list[SiteResult]] = {}
    for r in results:
        by_mod.setdefault(r.modality, []).append(r)
    releasing = {m: [r for r in rs if np.any(np.asarray(r.arrays["counts"]) > 0)] for m, rs in by_mod.items()}
    protos: dict[str, ModalityPrototypes] = {
        m: aggregate_prototypes([r.arrays["prototypes"] for r in rs], [r.arrays["counts"] for r in rs], fed.aggregator,
                                fed.trim_fraction, fed.count_cap)
        for m, rs in releasing.items() if rs
    }
    new = ServerState(round=state.round + 1, anchors=dict(state.anchors), present=dict(state.present),
                      heads=dict(state.heads), weights=dict(state.weights), fingerprint=state.fingerprint, fusion=dict(state.fusion))
    if fusions:
        new.fusion = aggregate_weights([{k[len(FUSION_PREFIX):]: v for k, v in r.arrays.items() if k.startswith(FUSION_PREFIX)}
                                        for r in fusions],
                                       [float(cap_counts(r.arrays["counts"], fed.count_cap).sum()) for r in fusions],
                                       fed.aggregator, fed.trim_fraction)
    if fed.share_weights:
        for m, rs in by_mod.items():
            with_w = [r for r in rs if any(k.startswith(WEIGHT_PREFIX) for k in r.arrays)]
            if with_w:
                new.weights[m] = aggregate_weights(
                    [{k[len(WEIGHT_PREFIX):]: v for k, v in r.arrays.items() if k.startswith(WEIGHT_PREFIX)} for r in with_w],
                    [float(cap_counts(r.arrays["counts"], fed.count_cap).sum()) for r in with_w], fed.aggregator, fed.trim_fraction)
    if not protos:
        if fed.objective(new.round) == "prototypes":
            log.warning("round %d: no site released a prototype; the anchors and heads of round %d stay", new.round, state.round)
        return new, RoundSummary(round=new.round, n_sites=len(nodes), sites=sorted(r.site for r in nodes),
                                 alignment_before=float("nan"), alignment_after=float("nan"), classes_per_modality={},
                                 train_loss=_mean_loss(nodes))
    dim = next(iter(protos.values())).prototypes.shape[1]
    if align.enabled and len(protos) > 1:
        previous = state.anchors.get(align.anchor_modality, next(iter(state.anchors.values()), None))
        result: AlignResult = align_prototypes(protos, align, seed=new.round, previous=previous)
        union = np.any([p.present for p in protos.values()], axis=0)
        # one anchor set for every modality, damped against the anchor modality's previous one
        anchors = result.anchors if previous is None or previous.shape != result.anchors.shape else \
            _unit(damped(result.anchors, previous, align.keep)).astype(np.float32)
        eye = np.eye(dim, dtype=np.float32)
        for m in protos:
            step = damped(result.maps[m], eye, align.keep if m in state.heads else 0.0)
            new.heads[m] = polar_factor(step @ new.heads.get(m, eye))
            new.anchors[m] = anchors
            new.present[m] = union
        before, after = result.score_before, result.score_after
    else:
        anchor_mod = align.anchor_modality if align.anchor_modality in protos else (sorted(protos)[0] if protos else None)
        for m, p in protos.items():
            old = new.anchors.get(m)
            fresh = _unit(p.prototypes)
            new.anchors[m] = np.where(p.present[:, None], fresh, old if old is not None else fresh).astype(np.float32)
            new.present[m] = p.present | (new.present.get(m, np.zeros_like(p.present)))
        others = {m: p for m, p in protos.items() if m != anchor_mod}
        before = after = mean_cross_score(protos[anchor_mod], others) if anchor_mod else float("nan")
    summary = RoundSummary(
        round=new.round, n_sites=len(nodes), sites=sorted(r.site for r in nodes),
        alignment_before=float(before), alignment_after=float(after),
        classes_per_modality={m: int(p.present.sum()) for m, p in protos.items()},
        train_loss=_mean_loss(nodes),
        head_condition={m: condition_number(h) for m, h in new.heads.items() if np.all(np.isfinite(h))},
    )
    return _keep_finite(state, new), summary


def _keep_finite(old: ServerState, new: ServerState) -> ServerState:
    """Last guard: a non-finite anchor, head or weight never reaches the broadcast; the previous value stays (or none)."""
    if not all(np.all(np.isfinite(v)) for v in new.fusion.values()):
        log.error("round %d: non-finite fusion head; keeping round %d's", new.round, old.round)
        new.fusion = old.fusion
    for attr in ("anchors", "heads", "weights"):
        table, before = getattr(new, attr), getattr(old, attr)
        for m, value in list(table.items()):
            arrays = value.values() if attr == "weights" else [value]
            if all(np.all(np.isfinite(a)) for a in arrays):
                continue
            log.error("round %d: non-finite %s for %s; keeping round %d's", new.round, attr, m, old.round)
            if m in before:
                table[m] = before[m]
            else:
                del table[m]
                if attr == "anchors":
                    new.present.pop(m, None)
    return new


def _mean_loss(results: list[SiteResult]) -> float:
    losses = [r.metrics["train_loss"] for r in results if "train_loss" in r.metrics and np.isfinite(r.metrics["train_loss"])]
    return float(np.mean(losses)) if losses else float("nan")


def site_rows(round_no: int, results: list[SiteResult]) -> list[dict]:
    """Per-site metrics of one round for the results files (privacy status and bytes sent)."""
    return [{"round": round_no, "site": r.site, "modality": r.modality, **{k: float(v) for k, v in r.metrics.items()},
             "bytes_sent": r.bytes_sent, "prototype_bytes": r.prototype_bytes} for r in results]


def write_csv(path: Path, rows: list[dict]) -> None:
    """Rows with possibly different keys as one CSV (columns: the sorted union); nothing for no rows."""
    if not rows:
        return
    keys = sorted({k for r in rows for k in r})
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


def write_json(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, default=lambda o: dataclasses.asdict(o) if dataclasses.is_dataclass(o) else str(o)))
