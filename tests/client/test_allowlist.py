import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Error, Message, MetricRecord, RecordDict

from fedxalign.client.allowlist import BAD_REQUEST, REFUSED_BY_POLICY, SITE_ERROR, WITHHELD, make_allowlist_mod
from fedxalign.shared.privacy.policy import PolicyRefusal
from fedxalign.shared.protocol import BadRequest, ReplySpec

SPEC = ReplySpec(n_classes=5, embed_dim=8, epsilon_budget=8.0)
MOD = make_allowlist_mod(lambda context: SPEC)
METRICS = {"epsilon": 1.0, "delta": 1e-5, "epsilon_budget": 8.0, "released_classes": 5.0}


@pytest.fixture(autouse=True)
def task_identity(monkeypatch):
    """Flower stamps messages with the running task's identity; outside a run, give it one."""
    from flwr.supercore.task_identity import TaskIdentity

    for attr in ("_task_id", "_run_id", "_node_id"):
        monkeypatch.setattr(TaskIdentity, attr, 1)


def context() -> Context:
    return Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={})


def incoming(kind: str) -> Message:
    return Message(RecordDict(), dst_node_id=1, message_type=kind)


def reply_to(msg: Message, **records) -> Message:
    return Message(RecordDict(records), reply_to=msg)


def release(**arrays):
    return ArrayRecord({k: Array(np.asarray(v, np.float32)) for k, v in arrays.items()})


def send(kind: str, handler) -> Message:
    return MOD(incoming(kind), context(), handler)


def good_train(**overrides):
    arrays = {"prototypes": np.zeros((5, 8)), "counts": np.full(5, 10.0)} | overrides
    return {"release": release(**arrays), "metrics": MetricRecord(METRICS)}


def test_documented_replies_pass():
    assert not send("train", lambda m, c: reply_to(m, **good_train())).has_error()
    assert not send("query", lambda m, c: reply_to(m, info=ConfigRecord({"site": "a", "modality": "eeg", "evaluates": "no"}))).has_error()
    assert not send("evaluate", lambda m, c: reply_to(m, metrics=MetricRecord({"accuracy": 0.5}))).has_error()
    assert not send("evaluate", lambda m, c: reply_to(m, metrics=MetricRecord({}))).has_error()


@pytest.mark.parametrize("kind, records, expect", [
    ("train", good_train(windows=np.zeros((100, 2, 30))), "array 'windows'"),
    ("train", good_train() | {"raw": ArrayRecord()}, "record 'raw'"),
    ("train", good_train(**{"weights.anything": np.zeros(3)}), "weights.anything"),
    ("train", good_train(prototypes=np.zeros((120, 8))), "shape"),
    ("train", good_train(prototypes=np.full((5, 8), np.nan)), "non-finite"),
    ("train", good_train(counts=np.full(5, 1e9)), "counts"),
    ("train", {"release": release(prototypes=np.zeros((5, 8)), counts=np.ones(5)),
               "metrics": MetricRecord(METRICS | {"epsilon": 9.0})}, "epsilon"),
    ("train", {"release": release(prototypes=np.zeros((5, 8)), counts=np.ones(5)),
               "metrics": MetricRecord(METRICS | {"epsilon_budget": float("inf"), "epsilon": float("inf")})}, "epsilon"),
    ("train", {"release": release(prototypes=np.zeros((5, 8)), counts=np.ones(5)),
               "metrics": MetricRecord(METRICS | {"labels": [0, 1, 2]})}, "metric 'labels'"),
    ("evaluate", {"metrics": MetricRecord({"accuracy": 0.5, "n_eval": 120.0})}, "metric 'n_eval'"),
    ("evaluate", {"metrics": MetricRecord({"accuracy": float("nan")})}, "finite"),
    ("query", {"info": ConfigRecord({"site": "a", "modality": "eeg", "subjects": "S1,S2"})}, "query field 'subjects'"),
    ("train.extract", {}, "no reply is allowed"),
])
def test_anything_else_is_withheld_with_a_fixed_reason(kind, records, expect, caplog):
    out = send(kind, lambda m, c: reply_to(m, **records))
    assert out.has_error() and out.error.code == WITHHELD
    assert out.error.reason == "withheld by the site's allow-list" and not out.has_content()
    assert expect in caplog.text  # the details stay in the site's own log


@pytest.mark.parametrize("exc, code, reason", [
    (PolicyRefusal("epsilon", "asked for 80.0"), REFUSED_BY_POLICY, "refused by site policy: epsilon"),
    (BadRequest("anchors hold 3.14159"), BAD_REQUEST, "refused: the request is not a usable global state"),
    (ValueError("/data/psg/subject_42.edf: value 3.14159 out of range"), SITE_ERROR, "site error; details are in the site's log"),
])
def test_exceptions_leave_as_fixed_codes_without_values(exc, code, reason):
    def handler(m, c):
        raise exc

    out = send("train", handler)
    assert out.error.code == code and out.error.reason == reason
    assert "3.14159" not in out.error.reason and "80.0" not in out.error.reason


def test_an_error_reply_from_a_handler_is_replaced_by_the_fixed_one():
    leaky = lambda m, c: Message(Error(code=1, reason="labels were 0,1,1,2"), reply_to=m)  # noqa: E731
    out = send("train", leaky)
    assert out.error.code == SITE_ERROR and "labels" not in out.error.reason
