"""The site's ClientApp as the coordinator meets it: refusals by policy key, nothing sent, nothing spent."""

import dataclasses

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict

from fedxalign.client.allowlist import BAD_REQUEST, REFUSED_BY_POLICY
from fedxalign.client.client_app import make_client_app
from fedxalign.simulations.settings import run_settings
from tests.conftest import compose_config


@pytest.fixture(autouse=True)
def task_identity(monkeypatch):
    from flwr.supercore.task_identity import TaskIdentity

    for attr in ("_task_id", "_run_id", "_node_id"):
        monkeypatch.setattr(TaskIdentity, attr, 1)


@pytest.fixture
def settings(tiny_federation, tmp_path):
    s = run_settings(compose_config("simulate", ["federation.rounds=2", "training.local_epochs=1", "privacy.min_count=2",
                                                 f"federation.results_dir={tmp_path / 'results'}",
                                                 f"federation.federation_dir={tiny_federation}",
                                                 f"federation.cache_dir={tmp_path / 'cache'}"]))
    return dataclasses.replace(s, federation=dataclasses.replace(s.federation, share_weights=False))


def send(settings, node_config, kind="train", global_arrays=None, round_no=1):
    app = make_client_app()  # as deployed: settings come from the run config, the policy from the site
    context = Context(run_id=1, node_id=1, node_config=node_config, state=RecordDict(), run_config=settings.to_flat())
    content = {"config": ConfigRecord({"round": round_no, "share-weights": settings.federation.share_weights})}
    if kind == "train":
        content["global"] = ArrayRecord({k: Array(np.asarray(v, np.float32)) for k, v in (global_arrays or {}).items()})
    return app(Message(RecordDict(content), dst_node_id=1, message_type=kind), context)


def node(tiny_federation, tmp_path, **keys):
    return {"data-dir": str(tiny_federation / "eeg_a"), "state-dir": str(tmp_path / "state")} | keys


@pytest.mark.parametrize("run_change, node_keys, key", [
    ({"privacy": {"enabled": False}}, {}, "dp_required"),
    ({"privacy": {"epsilon": 8.0}}, {"privacy-epsilon": 3.0}, "epsilon"),
    ({"federation": {"share_weights": True}}, {"share-weights": False}, "share_weights"),
    ({"federation": {"report_train_loss": True}}, {}, "share_train_loss"),
])
def test_a_weakening_request_is_refused_and_nothing_is_sent_or_spent(settings, tiny_federation, tmp_path, run_change, node_keys, key):
    for section, values in run_change.items():
        settings = dataclasses.replace(settings, **{section: dataclasses.replace(getattr(settings, section), **values)})
    reply = send(settings, node(tiny_federation, tmp_path, **node_keys))
    assert reply.has_error() and reply.error.code == REFUSED_BY_POLICY
    assert reply.error.reason == f"refused by site policy: {key}" and not reply.has_content()
    assert not (tmp_path / "state").exists()  # no ledger, no encoder: nothing was read or spent


def test_a_request_within_the_policy_is_answered(settings, tiny_federation, tmp_path):
    reply = send(settings, node(tiny_federation, tmp_path))
    assert not reply.has_error()
    assert set(reply.content["release"]) == {"prototypes", "counts"}
    assert 0 < reply.content["metrics"]["epsilon"] <= 8.0


def test_a_non_finite_broadcast_is_refused_before_any_spending(settings, tiny_federation, tmp_path):
    bad = {"anchors": np.full((5, settings.model.embed_dim), np.nan), "present": np.ones(5)}
    reply = send(settings, node(tiny_federation, tmp_path), global_arrays=bad)
    assert reply.error.code == BAD_REQUEST and not (tmp_path / "state" / "ledger.json").exists()


def test_scores_leave_only_by_policy_and_ignore_what_the_evaluate_message_carries(settings, tiny_federation, tmp_path):
    assert not send(settings, node(tiny_federation, tmp_path)).has_error()  # one round trained
    closed = send(settings, node(tiny_federation, tmp_path), kind="evaluate")
    assert not closed.has_error() and dict(closed.content["metrics"]) == {}
    keys = node(tiny_federation, tmp_path, **{"share-metrics": True})
    first = send(settings, keys, kind="evaluate")
    app = make_client_app()
    context = Context(run_id=1, node_id=1, node_config=keys, state=RecordDict(), run_config=settings.to_flat())
    crafted = {"global": ArrayRecord({"anchors": Array(np.eye(5, settings.model.embed_dim, dtype=np.float32)),
                                      "present": Array(np.ones(5, np.float32))}), "config": ConfigRecord({"round": 1})}
    second = app(Message(RecordDict(crafted), dst_node_id=1, message_type="evaluate"), context)
    assert set(first.content["metrics"]) == {"accuracy", "balanced_accuracy"}
    assert dict(first.content["metrics"]) == dict(second.content["metrics"])


def test_the_query_reply_says_whether_evaluate_messages_get_scores(settings, tiny_federation, tmp_path):
    closed = send(settings, node(tiny_federation, tmp_path), kind="query")
    opened = send(settings, node(tiny_federation, tmp_path, **{"share-metrics": True}), kind="query")
    assert closed.content["info"]["evaluates"] == "no" and opened.content["info"]["evaluates"] == "yes"
