import json

import numpy as np
import pytest

from client.site_round import LEDGER_FILE, train_round
from shared.protocol import GlobalState
from client.training import TrainConfig
from shared.models.encoder import EncoderConfig
from shared.privacy.config import PrivacyConfig
from shared.protocol import DisallowedReply, check_reply

MODEL = EncoderConfig(d_model=16, n_heads=2, n_layers=1, embed_dim=16)
FAST = TrainConfig(local_epochs=1, planned_rounds=3)


def test_reply_holds_only_the_documented_message(eeg_site_data, tmp_path):
    reply = train_round(eeg_site_data, tmp_path, MODEL, FAST, PrivacyConfig(), GlobalState())
    assert set(reply.arrays) == {"prototypes", "counts"}
    assert reply.arrays["prototypes"].shape == (5, 16) and reply.arrays["counts"].shape == (5,)
    assert set(reply.metrics) == {"epsilon", "delta", "epsilon_budget", "dp_steps", "noise_multiplier", "released_classes"}
    sizes = {int((eeg_site_data.split == s).sum()) for s in ("train", "val", "test")}
    assert not any(dim in sizes for arr in reply.arrays.values() for dim in arr.shape)


def test_shared_weights_only_when_asked(eeg_site_data, tmp_path):
    reply = train_round(eeg_site_data, tmp_path, MODEL, FAST, PrivacyConfig(enabled=False), GlobalState(), share_weights=True)
    weights = {k for k in reply.arrays if k.startswith("weights.")}
    assert "weights.head.weight" in weights and reply.metrics["epsilon"] == float("inf")


def test_ledger_persists_and_grows_across_rounds(eeg_site_data, tmp_path):
    cfg = PrivacyConfig(epsilon=8.0)
    first = train_round(eeg_site_data, tmp_path, MODEL, FAST, cfg, GlobalState(), round_seed=1)
    second = train_round(eeg_site_data, tmp_path, MODEL, FAST, cfg, GlobalState(), round_seed=2)
    assert 0 < first.metrics["epsilon"] < second.metrics["epsilon"] <= 8.0
    stored = json.loads((tmp_path / LEDGER_FILE).read_text())
    assert stored["epsilon_spent"] == pytest.approx(second.metrics["epsilon"])
    assert stored["counts"]["prototype_release"] == 2


def test_budget_exhausted_site_releases_nothing(eeg_site_data, tmp_path):
    cfg = PrivacyConfig(epsilon=8.0)
    plan = TrainConfig(local_epochs=1, planned_rounds=1)
    train_round(eeg_site_data, tmp_path, MODEL, plan, cfg, GlobalState())
    for _ in range(3):  # rounds beyond the plan eat what is left, then the site refuses
        reply = train_round(eeg_site_data, tmp_path, MODEL, plan, cfg, GlobalState())
    assert reply.metrics["epsilon"] <= 8.0
    assert reply.metrics["released_classes"] == 0 and not reply.arrays["prototypes"].any()


def test_allow_list_refuses_sample_sized_or_unknown_content():
    ok = {"prototypes": np.zeros((5, 16), np.float32), "counts": np.zeros(5, np.float32)}
    kw = dict(n_classes=5, embed_dim=16, weight_shapes=None, forbidden_sizes={120})
    check_reply(ok, {"epsilon": 1.0}, **kw)
    with pytest.raises(DisallowedReply, match="not in the documented message"):
        check_reply(ok | {"embeddings": np.zeros((120, 16))}, {}, **kw)
    with pytest.raises(DisallowedReply, match="not in the documented set"):
        check_reply(ok, {"labels_hash": 3.0}, **kw)
    with pytest.raises(DisallowedReply, match="shape"):
        check_reply(ok | {"prototypes": np.zeros((120, 16))}, {}, **kw)
    with pytest.raises(DisallowedReply, match="lacks documented"):
        check_reply({"prototypes": ok["prototypes"]}, {}, **kw)
    with pytest.raises(DisallowedReply, match="non-finite"):
        check_reply(ok | {"counts": np.full(5, np.nan, np.float32)}, {}, **kw)
    with pytest.raises(DisallowedReply, match="bounded scalar"):
        check_reply(ok, {"epsilon": np.zeros(120)}, **kw)
