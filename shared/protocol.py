"""The one documented message a site may send, and the one rule set that checks it on both sides.

The site's allow-list mod runs `reply_problems` on every outgoing reply; the coordinator runs
the same function on every reply it receives and drops a reply that fails it. A train reply holds exactly:
  arrays  `prototypes` (C, d) float32 noisy class means; `counts` (C,) float32 noisy counts in
          [0, max_count]; `weights.<name>` encoder parameters with the model's own shapes, only
          when the run shares weights and the site's policy allows it.
  metrics `epsilon`, `delta`, `epsilon_budget` (privacy status; epsilon <= budget <= the run's),
          `released_classes`, and `train_loss` only when the run asks and the site's policy allows it.
A paired site (EEG and ECG of the same epochs, one node) sends instead `eeg.prototypes` and
`ecg.prototypes` (C, d) with ONE `counts` (C,) (one joint release: a pair is one unit),
`eeg.weights.<name>` / `ecg.weights.<name>` when weights are shared, and `fusion.<name>`, its
fusion head, when the run fuses.
An evaluate reply holds `accuracy`, `balanced_accuracy` (held-out split, not DP) only when the
site's policy opts in, else nothing. Nothing sized by the number of windows, no raw signal, no
per-window embedding or label, no step count or noise multiplier (they reveal the training-set size).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from fedxalign.shared.errors import FedXAlignError

TRAIN_ARRAYS = ("prototypes", "counts")
WEIGHT_PREFIX = "weights."
TRAIN_METRICS = frozenset({"epsilon", "delta", "epsilon_budget", "released_classes", "train_loss"})
EVAL_METRICS = frozenset({"accuracy", "balanced_accuracy"})
QUERY_FIELDS = frozenset({"site", "modality", "evaluates"})  # evaluates: "yes" | "no", the policy's share_metrics
MODALITIES = ("eeg", "ecg")
PAIRED = "paired"  # a node's kind when it holds both modalities of the same epochs
NODE_KINDS = (*MODALITIES, PAIRED)
FUSION_PREFIX = "fusion."
RECORDS = {"query": {"info": "config"}, "train": {"release": "array", "metrics": "metric"}, "evaluate": {"metrics": "metric"}}
MAX_SCALAR = 1e12
MAX_COUNT = 1e6  # no class of one site holds a million 30-s windows (about 1 patient-century)


@dataclass(frozen=True)
class GlobalState:
    """What the server broadcast: anchors (C, d) and which classes they cover; this modality's
    alignment head (d, d) and averaged encoder weights, when the run has them."""

    anchors: np.ndarray | None = None
    present: np.ndarray | None = None
    head: np.ndarray | None = None
    weights: dict[str, np.ndarray] | None = None


@dataclass(frozen=True)
class ReplySpec:
    """What a reply may hold: message sizes, the run's budget (None: DP off) and the site's sample counts."""

    n_classes: int
    embed_dim: int
    weight_shapes: Mapping[str, tuple[int, ...]] | None = None
    epsilon_budget: float | None = None
    max_count: float = MAX_COUNT
    forbidden_sizes: frozenset[int] = field(default_factory=frozenset)
    paired_weight_shapes: Mapping[str, Mapping[str, tuple[int, ...]]] | None = None  # a paired site's, per modality
    fusion_shapes: Mapping[str, tuple[int, ...]] | None = None
    paired: bool = False

    def expected_arrays(self) -> dict[str, tuple[int, ...]]:
        """Every array a train reply must hold, with its shape."""
        protos, counts = (self.n_classes, self.embed_dim), (self.n_classes,)
        if not self.paired:
            out = {"prototypes": protos, "counts": counts}
            return out | {WEIGHT_PREFIX + k: tuple(s) for k, s in (self.weight_shapes or {}).items()}
        out = {f"{m}.prototypes": protos for m in MODALITIES} | {"counts": counts}
        for m, shapes in (self.paired_weight_shapes or {}).items():
            out |= {f"{m}.{WEIGHT_PREFIX}{k}": tuple(s) for k, s in shapes.items()}
        return out | {FUSION_PREFIX + k: tuple(s) for k, s in (self.fusion_shapes or {}).items()}


class DisallowedReply(FedXAlignError):
    """A reply holds something the site must not send; it is not sent."""


def _name(key: object) -> str:
    """A record or field name for a log line: short, printable, never a data value."""
    text = str(key)
    return repr(text[:40] + ("..." if len(text) > 40 else ""))


def _finite_scalar(v: Any) -> bool:
    return isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool) and math.isfinite(float(v)) \
        and abs(float(v)) <= MAX_SCALAR


def reply_problems(kind: str, records: Mapping[str, tuple[str, Mapping[str, Any]]], spec: ReplySpec | None) -> list[str]:
    """Everything that makes a reply to a `kind` message undocumented (empty list: it may go / be used).

    `records` maps record name -> (record kind: array, metric or config; its items as plain
    values). `spec` may be None only for query replies.
    """
    allowed = RECORDS.get(kind)
    if allowed is None:
        return [f"no reply is allowed to a {_name(kind)} message"]
    problems = [f"record {_name(n)} ({rk})" for n, (rk, _) in records.items() if allowed.get(n) != rk]
    if problems:
        return problems
    if kind == "query":
        info = records.get("info", ("config", {}))[1]
        problems += [f"query field {_name(k)}" for k in info if k not in QUERY_FIELDS]
        problems += [f"query field {_name(k)} missing" for k in QUERY_FIELDS if k not in info]
        problems += [f"query field {_name(k)} is not a short string" for k, v in info.items() if not isinstance(v, str) or len(v) > 200]
        if isinstance(info.get("modality"), str) and info["modality"] not in NODE_KINDS:
            problems.append("query field 'modality' is not a known modality")
        if isinstance(info.get("evaluates"), str) and info["evaluates"] not in ("yes", "no"):
            problems.append("query field 'evaluates' is not yes or no")
        return problems
    assert spec is not None, "train and evaluate replies are checked against a spec"
    metrics = records.get("metrics", ("metric", {}))[1]
    allowed_metrics = TRAIN_METRICS if kind == "train" else EVAL_METRICS
    problems += [f"metric {_name(k)}" for k in metrics if k not in allowed_metrics]
    problems += [f"metric {_name(k)} is not a finite bounded scalar" for k, v in metrics.items()
                 if k in allowed_metrics and not _finite_scalar(v) and not (k in ("epsilon", "epsilon_budget") and _is_inf(v))]
    if problems:
        return problems
    if kind == "evaluate":
        return [f"metric {_name(k)} outside [0, 1]" for k, v in metrics.items() if not 0.0 <= float(v) <= 1.0]
    return problems + _train_problems(records.get("release", ("array", {}))[1], metrics, spec)


def _is_inf(v: Any) -> bool:
    return isinstance(v, (int, float, np.floating)) and math.isinf(float(v)) and float(v) > 0


def _train_problems(arrays: Mapping[str, Any], metrics: Mapping[str, Any], spec: ReplySpec) -> list[str]:
    problems = [f"metric {_name(k)} missing" for k in ("epsilon", "delta", "epsilon_budget", "released_classes") if k not in metrics]
    if problems:
        return problems
    eps, budget, delta = float(metrics["epsilon"]), float(metrics["epsilon_budget"]), float(metrics["delta"])
    run_budget = math.inf if spec.epsilon_budget is None else spec.epsilon_budget
    if not 0 <= eps <= budget * (1 + 1e-9) or budget > run_budget * (1 + 1e-9):
        problems.append("epsilon beyond the announced budget")
    if not 0 < delta < 1:
        problems.append("delta outside (0, 1)")
    if not 0 <= float(metrics["released_classes"]) <= spec.n_classes:
        problems.append("released_classes outside [0, C]")
    expected = spec.expected_arrays()
    problems += [f"array {_name(k)} is not in the documented message" for k in arrays if k not in expected]
    problems += [f"array {_name(k)} missing" for k in expected if k not in arrays]
    if problems:
        return problems
    message_dims = {spec.n_classes, spec.embed_dim}
    for k, arr in arrays.items():
        a = np.asarray(arr)
        if tuple(a.shape) != expected[k]:
            problems.append(f"array {_name(k)} has shape {tuple(a.shape)}, the message defines {expected[k]}")
            continue
        if not _is_model(k) and any(s in spec.forbidden_sizes and s not in message_dims for s in a.shape):
            problems.append(f"array {_name(k)} has a dimension equal to a sample count")
        if not np.issubdtype(a.dtype, np.number) or not np.all(np.isfinite(a)) or np.any(np.abs(a) > MAX_SCALAR):
            problems.append(f"array {_name(k)} holds non-finite or unbounded values")
    if not problems:
        counts = np.asarray(arrays["counts"], np.float64)
        if np.any(counts < 0) or np.any(counts > spec.max_count):
            problems.append(f"array 'counts' outside [0, {spec.max_count:g}]")
    return problems


def _is_model(name: str) -> bool:
    """Model parameters: their shapes are the model's, whatever the site's sample counts happen to be."""
    return WEIGHT_PREFIX in name or name.startswith(FUSION_PREFIX)


def check_reply(arrays: Mapping[str, np.ndarray], metrics: Mapping[str, float], spec: ReplySpec, kind: str = "train") -> None:
    """Raise DisallowedReply unless (arrays, metrics) is exactly the documented message (the site's own pre-send check)."""
    records: dict[str, tuple[str, Mapping[str, Any]]] = {"metrics": ("metric", metrics)}
    if kind == "train" or arrays:  # arrays in another reply are refused as an undocumented record
        records["release"] = ("array", arrays)
    problems = reply_problems(kind, records, spec)
    if problems:
        raise DisallowedReply(f"{kind} reply withheld: {'; '.join(problems)}")


def message_records(content: Any) -> dict[str, tuple[str, dict[str, Any]]]:
    """A Flower RecordDict as plain values: name -> (array | metric | config, items)."""
    from flwr.app import ArrayRecord, ConfigRecord, MetricRecord

    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for name, rec in content.items():
        if isinstance(rec, ArrayRecord):
            out[name] = ("array", {k: v.numpy() for k, v in rec.items()})
        elif isinstance(rec, MetricRecord):
            out[name] = ("metric", dict(rec))
        elif isinstance(rec, ConfigRecord):
            out[name] = ("config", dict(rec))
        else:
            out[name] = (type(rec).__name__, {})
    return out


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


class BadRequest(FedXAlignError):
    """What the coordinator sent is not a usable global state; the site spends nothing on it."""


def unpack_global(arrays: Mapping[str, np.ndarray], n_classes: int, embed_dim: int,
                  weight_shapes: Mapping[str, tuple[int, ...]] | None) -> GlobalState:
    """The broadcast, checked as the site trusts it: shapes of the message, finite values, known weight names."""
    known = {"anchors", "present", "head"}
    unknown = [k for k in arrays if k not in known and not k.startswith(WEIGHT_PREFIX)]
    if unknown:
        raise BadRequest("global arrays outside the protocol")
    shapes = {"anchors": (n_classes, embed_dim), "present": (n_classes,), "head": (embed_dim, embed_dim)}
    for k, shape in shapes.items():
        if k in arrays and tuple(np.shape(arrays[k])) != shape:
            raise BadRequest(f"global array {k!r} has the wrong shape")
    if ("anchors" in arrays) != ("present" in arrays):
        raise BadRequest("global anchors come without their class mask")
    weights = {k[len(WEIGHT_PREFIX):]: v for k, v in arrays.items() if k.startswith(WEIGHT_PREFIX)}
    if weights and (weight_shapes is None or {k: tuple(np.shape(v)) for k, v in weights.items()} != dict(weight_shapes)):
        raise BadRequest("global weights do not match this site's encoder")
    if any(not np.all(np.isfinite(np.asarray(v, np.float64))) for v in arrays.values()):
        raise BadRequest("global arrays hold non-finite values")
    if "anchors" in arrays and np.any(np.linalg.norm(np.asarray(arrays["anchors"], np.float64), axis=1)[np.asarray(arrays["present"]) > 0] < 1e-6):
        raise BadRequest("global anchors hold a zero vector for a present class")
    return GlobalState(
        anchors=arrays.get("anchors"),
        present=arrays["present"].astype(bool) if "present" in arrays else None,
        head=arrays.get("head"),
        weights=weights or None,
    )


def pack_paired_global(globs: Mapping[str, GlobalState], fusion: Mapping[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    """Server -> paired site: each modality's arrays under `<modality>.`, the averaged fusion head under `fusion.`."""
    out = {f"{m}.{k}": v for m, g in globs.items() for k, v in pack_global(g).items()}
    return out | {FUSION_PREFIX + k: np.asarray(v) for k, v in (fusion or {}).items()}


def unpack_paired_global(arrays: Mapping[str, np.ndarray], n_classes: int, embed_dim: int,
                         weight_shapes: Mapping[str, Mapping[str, tuple[int, ...]]] | None,
                         fusion_shapes: Mapping[str, tuple[int, ...]] | None) -> tuple[dict[str, GlobalState], dict[str, np.ndarray] | None]:
    """The paired broadcast, each part checked as `unpack_global` checks a single site's."""
    unknown = [k for k in arrays if not k.startswith(FUSION_PREFIX) and k.partition(".")[0] not in MODALITIES]
    if unknown:
        raise BadRequest("global arrays outside the protocol")
    globs = {m: unpack_global({k[len(m) + 1:]: v for k, v in arrays.items() if k.startswith(m + ".")}, n_classes, embed_dim,
                              (weight_shapes or {}).get(m)) for m in MODALITIES}
    fusion = {k[len(FUSION_PREFIX):]: v for k, v in arrays.items() if k.startswith(FUSION_PREFIX)}
    if fusion and (fusion_shapes is None or {k: tuple(np.shape(v)) for k, v in fusion.items()} != dict(fusion_shapes)):
        raise BadRequest("global fusion head does not match this site's")
    if any(not np.all(np.isfinite(np.asarray(v, np.float64))) for v in fusion.values()):
        raise BadRequest("global arrays hold non-finite values")
    return globs, fusion or None
