import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict

from client.allowlist import allowlist_mod, violations


@pytest.fixture(autouse=True)
def task_identity(monkeypatch):
    """Flower stamps messages with the running task's identity; outside a run, give it one."""
    from flwr.supercore.task_identity import TaskIdentity

    for attr in ("_task_id", "_run_id", "_node_id"):
        monkeypatch.setattr(TaskIdentity, attr, 1)


def incoming(kind: str) -> Message:
    return Message(RecordDict(), dst_node_id=1, message_type=kind)


def reply_to(msg: Message, **records) -> Message:
    return Message(RecordDict(records), reply_to=msg)


def release(**arrays):
    return ArrayRecord({k: Array(np.asarray(v, np.float32)) for k, v in arrays.items()})


def test_documented_replies_pass():
    ok_train = reply_to(incoming("train"), release=release(prototypes=np.zeros((5, 8)), counts=np.zeros(5)),
                        metrics=MetricRecord({"epsilon": 1.0, "delta": 1e-5}))
    assert violations("train", ok_train) == []
    assert violations("query", reply_to(incoming("query"), info=ConfigRecord({"site": "a", "modality": "eeg"}))) == []
    assert violations("evaluate", reply_to(incoming("evaluate"), metrics=MetricRecord({"accuracy": 0.5}))) == []


@pytest.mark.parametrize("kind, records, expect", [
    ("train", {"release": release(prototypes=np.zeros((5, 8)), counts=np.zeros(5), windows=np.zeros((100, 2, 3000)))}, "array 'windows'"),
    ("train", {"release": release(prototypes=np.zeros((5, 8)), counts=np.zeros(5)), "raw": ArrayRecord()}, "record 'raw'"),
    ("train", {"metrics": MetricRecord({"labels": [0, 1, 2]})}, "metric 'labels'"),
    ("evaluate", {"metrics": MetricRecord({"epsilon": 1.0, "train_loss": 0.3})}, "metric 'train_loss'"),
    ("query", {"info": ConfigRecord({"site": "a", "modality": "eeg", "subjects": "S1,S2"})}, "query field 'subjects'"),
    ("train.extract", {}, None),
])
def test_anything_else_is_withheld(kind, records, expect):
    msg = incoming(kind)
    out = allowlist_mod(msg, Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={}),
                        lambda m, c: reply_to(m, **records))
    if expect is None:  # a reply to an unknown action never goes out
        assert out.has_error()
        return
    assert out.has_error() and expect in out.error.reason
    assert not out.has_content()
