"""A Flower mod on the site's ClientApp: every outgoing reply is checked against the documented message.

The handlers already build only the documented content and `check_reply` verifies shapes against
the site's sample counts; this mod is the last gate, independent of the handlers and of what the
server asked for: a reply whose records, arrays or metrics are not in the allow-list is replaced
by an error reply, so a changed server cannot pull anything else out of a site.
"""

from __future__ import annotations

import logging

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Error, Message, MetricRecord

from shared.protocol import EVAL_METRICS, TRAIN_ARRAYS, TRAIN_METRICS, WEIGHT_PREFIX

log = logging.getLogger(__name__)

QUERY_FIELDS = frozenset({"site", "modality"})
REFUSED_CODE = 403


def violations(msg_type: str, reply: Message) -> list[str]:
    """What in `reply` is not allowed for a reply to `msg_type` (empty list: it may go)."""
    kind = msg_type  # the app registers only the plain query/train/evaluate handlers
    content = reply.content
    allowed = {"query": {"info": ConfigRecord}, "train": {"release": ArrayRecord, "metrics": MetricRecord},
               "evaluate": {"metrics": MetricRecord}}.get(kind)
    if allowed is None:
        return [f"no reply is allowed to a {msg_type!r} message"]
    problems = [f"record {name!r} ({type(rec).__name__})" for name, rec in content.items()
                if name not in allowed or not isinstance(rec, allowed[name])]
    if kind == "query" and "info" in content:
        info = content["info"]
        problems += [f"query field {k!r}" for k in info if k not in QUERY_FIELDS]
        problems += [f"query field {k!r} is not a short string" for k, v in info.items() if not isinstance(v, str) or len(v) > 200]
    if kind == "train" and "release" in content:
        for name, arr in content["release"].items():
            if name not in TRAIN_ARRAYS and not name.startswith(WEIGHT_PREFIX):
                problems.append(f"array {name!r}")
            elif name == "prototypes" and len(arr.shape) != 2 or name == "counts" and len(arr.shape) != 1:
                problems.append(f"array {name!r} of shape {arr.shape}")
    metrics = TRAIN_METRICS if kind == "train" else EVAL_METRICS
    if "metrics" in content:
        for k, v in content["metrics"].items():
            if k not in metrics:
                problems.append(f"metric {k!r}")
            elif isinstance(v, list) or not np.isscalar(v):
                problems.append(f"metric {k!r} is not a scalar")
    return problems


def allowlist_mod(msg: Message, context: Context, call_next) -> Message:
    reply = call_next(msg, context)
    if reply.has_error():
        return reply
    problems = violations(msg.metadata.message_type, reply)
    if problems:
        log.error("reply to %s withheld: not in the allow-list: %s", msg.metadata.message_type, problems)
        return Message(Error(code=REFUSED_CODE, reason=f"withheld by the site's allow-list: {problems}"), reply_to=msg)
    return reply
