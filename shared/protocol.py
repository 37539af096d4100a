"""The one documented message a site may send, and the allow-list check run before every reply.

A train reply holds exactly:
  arrays  `prototypes` (C, d) float32 noisy class means; `counts` (C,) float32 noisy counts;
          `weights.<name>` encoder parameters with the model's own shapes, only when the run shares weights.
  metrics `epsilon`, `delta`, `epsilon_budget` (privacy status), `dp_steps`, `noise_multiplier`,
          `released_classes`, and `train_loss` only when the site opts in (a single non-DP scalar).
An evaluate reply holds only the metrics in EVAL_METRICS (aggregate scores on the site's held-out
split). Nothing sized by the number of windows, no raw signal, no per-window embedding or label.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from shared.errors import FedXAlignError

TRAIN_ARRAYS = ("prototypes", "counts")
WEIGHT_PREFIX = "weights."
TRAIN_METRICS = frozenset({"epsilon", "delta", "epsilon_budget", "dp_steps", "noise_multiplier", "released_classes", "train_loss"})
EVAL_METRICS = frozenset({"accuracy", "balanced_accuracy", "n_eval", "epsilon"})
MAX_SCALAR = 1e12


@dataclass(frozen=True)
class GlobalState:
    """What the server broadcast: anchors (C, d) and which classes they cover; this modality's
    alignment head (d, d) and averaged encoder weights, when the run has them."""

    anchors: np.ndarray | None = None
    present: np.ndarray | None = None
    head: np.ndarray | None = None
    weights: dict[str, np.ndarray] | None = None



class DisallowedReply(FedXAlignError):
    """A reply holds something the site must not send; it is not sent."""


def check_reply(arrays: Mapping[str, np.ndarray], metrics: Mapping[str, float], *, n_classes: int, embed_dim: int,
                weight_shapes: Mapping[str, tuple[int, ...]] | None, forbidden_sizes: set[int], kind: str = "train") -> None:
    """Raise DisallowedReply unless the reply is exactly the documented message.

    `weight_shapes` is None when the run does not share weights. `forbidden_sizes` are the
    site's sample counts (train/val/test windows): an array with such a dimension could carry
    per-window data and is refused, unless the dimension is one the message defines (C or d).
    """
    allowed_metrics = TRAIN_METRICS if kind == "train" else EVAL_METRICS
    extra = sorted(set(metrics) - allowed_metrics)
    if extra:
        raise DisallowedReply(f"{kind} reply metric(s) {extra} are not in the documented set {sorted(allowed_metrics)}")
    for k, v in metrics.items():
        if not isinstance(v, (int, float, np.floating, np.integer)) or not (abs(float(v)) <= MAX_SCALAR or np.isinf(v)):
            raise DisallowedReply(f"metric {k!r} must be a bounded scalar, got {type(v).__name__} {v!r}")
    expected: dict[str, tuple[int, ...]] = {}
    if kind == "train":
        expected = {"prototypes": (n_classes, embed_dim), "counts": (n_classes,)}
        if weight_shapes is not None:
            expected |= {WEIGHT_PREFIX + k: tuple(s) for k, s in weight_shapes.items()}
    unexpected = sorted(set(arrays) - set(expected))
    if unexpected:
        raise DisallowedReply(f"{kind} reply array(s) {unexpected} are not in the documented message {sorted(expected)}")
    missing = sorted(set(expected) - set(arrays))
    if missing:
        raise DisallowedReply(f"{kind} reply lacks documented array(s) {missing}")
    message_dims = {n_classes, embed_dim}
    for name, arr in arrays.items():
        shape = tuple(np.shape(arr))
        if shape != expected[name]:
            raise DisallowedReply(f"array {name!r} has shape {shape}, the message defines {expected[name]}")
        if not name.startswith(WEIGHT_PREFIX):
            sized = [s for s in shape if s in forbidden_sizes and s not in message_dims]
            if sized:
                raise DisallowedReply(f"array {name!r} has a dimension equal to a sample count {sized}")
        if not np.all(np.isfinite(arr)):
            raise DisallowedReply(f"array {name!r} holds non-finite values")


def pack_global(glob: GlobalState) -> dict[str, np.ndarray]:
    """Server -> site arrays: `anchors`, `present`, `head`, and `weights.*` when shared."""
    out = {}
    if glob.anchors is not None:
        out["anchors"] = np.asarray(glob.anchors, np.float32)
        out["present"] = np.asarray(glob.present, np.float32)
    if glob.head is not None:
        out["head"] = np.asarray(glob.head, np.float32)
    for k, v in (glob.weights or {}).items():
        out[WEIGHT_PREFIX + k] = np.asarray(v)
    return out


def unpack_global(arrays: Mapping[str, np.ndarray]) -> GlobalState:
    weights = {k[len(WEIGHT_PREFIX):]: v for k, v in arrays.items() if k.startswith(WEIGHT_PREFIX)}
    return GlobalState(
        anchors=arrays.get("anchors"),
        present=arrays["present"].astype(bool) if "present" in arrays else None,
        head=arrays.get("head"),
        weights=weights or None,
    )
