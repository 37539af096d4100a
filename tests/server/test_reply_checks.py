"""The coordinator trusts no reply: each malformed train reply is dropped with a reason, none raises."""

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict

from fedxalign.server.federation_loop import checked_result
from fedxalign.shared.data.config import DataConfig, PreprocessConfig
from fedxalign.shared.models.encoder import EncoderConfig
from fedxalign.shared.privacy.config import PrivacyConfig
from fedxalign.shared.runconfig import AlignConfig, FederationConfig, RunSettings
from fedxalign.shared.train_config import TrainConfig

SETTINGS = RunSettings(FederationConfig(share_weights=False), AlignConfig(), DataConfig(("a", "b", "c"), {"eeg": PreprocessConfig(), "ecg": PreprocessConfig()}),
                       EncoderConfig(embed_dim=4, d_model=16, n_heads=2, n_layers=1), TrainConfig(), PrivacyConfig(epsilon=8.0))
SITE = {"site": "e1", "modality": "eeg", "evaluates": "yes"}
METRICS = {"epsilon": 2.0, "delta": 1e-5, "epsilon_budget": 8.0, "released_classes": 3.0}


@pytest.fixture(autouse=True)
def task_identity(monkeypatch):
    from flwr.supercore.task_identity import TaskIdentity

    for attr in ("_task_id", "_run_id", "_node_id"):
        monkeypatch.setattr(TaskIdentity, attr, 1)


def reply(records: dict) -> Message:
    msg = Message(RecordDict(), dst_node_id=1, message_type="train")
    return Message(RecordDict(records), reply_to=msg)


def release(**arrays):
    return ArrayRecord({k: Array(np.asarray(v, np.float32)) for k, v in arrays.items()})


GOOD = {"prototypes": np.ones((3, 4)), "counts": np.full(3, 20.0)}


def test_a_documented_reply_is_used():
    result, problems = checked_result(reply({"release": release(**GOOD), "metrics": MetricRecord(METRICS)}), SITE, SETTINGS)
    assert problems == [] and result.arrays["counts"].tolist() == [20.0] * 3


@pytest.mark.parametrize("records", [
    {"metrics": MetricRecord(METRICS)},  # no release record
    {"release": release(**GOOD)},  # no metrics
    {"release": release(prototypes=GOOD["prototypes"]), "metrics": MetricRecord(METRICS)},  # no counts
    {"release": release(prototypes=np.full((3, 4), np.nan), counts=GOOD["counts"]), "metrics": MetricRecord(METRICS)},
    {"release": release(prototypes=GOOD["prototypes"], counts=np.full(3, np.inf)), "metrics": MetricRecord(METRICS)},
    {"release": release(prototypes=GOOD["prototypes"], counts=np.full(3, -5.0)), "metrics": MetricRecord(METRICS)},
    {"release": release(prototypes=np.ones((3, 5)), counts=GOOD["counts"]), "metrics": MetricRecord(METRICS)},
    {"release": release(**GOOD), "metrics": MetricRecord(METRICS | {"epsilon": 9.5})},  # over the run's budget
    {"release": release(**GOOD), "metrics": MetricRecord(METRICS | {"epsilon": float("inf"), "epsilon_budget": float("inf")})},
    {"release": release(**GOOD), "metrics": MetricRecord(METRICS | {"delta": 0.5})} | {"extra": ConfigRecord({"x": "y"})},
])
def test_bad_replies_are_dropped_not_raised(records):
    result, problems = checked_result(reply(records), SITE, SETTINGS)
    assert result is None and problems
