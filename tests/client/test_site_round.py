import json

import numpy as np
import pytest

from fedxalign.client.site_round import LEDGER_FILE, site_seed, train_round
from fedxalign.client.training import TrainConfig
from fedxalign.shared.models.encoder import EncoderConfig
from fedxalign.shared.privacy.config import PrivacyConfig
from fedxalign.shared.privacy.ledger import LedgerIntegrityError
from fedxalign.shared.protocol import DisallowedReply, GlobalState, ReplySpec, check_reply

MODEL = EncoderConfig(d_model=16, n_heads=2, n_layers=1, embed_dim=16)
FAST = TrainConfig(local_epochs=1, planned_rounds=3)


def test_reply_holds_only_the_documented_message(eeg_site_data, tmp_path):
    reply = train_round(eeg_site_data, tmp_path, MODEL, FAST, PrivacyConfig(), GlobalState(), round_no=1)
    assert set(reply.arrays) == {"prototypes", "counts"}
    assert reply.arrays["prototypes"].shape == (5, 16) and reply.arrays["counts"].shape == (5,)
    # no step count, noise multiplier or loss: they would reveal the training-set size or a non-private value
    assert set(reply.metrics) == {"epsilon", "delta", "epsilon_budget", "released_classes"}
    sizes = {int((eeg_site_data.split == s).sum()) for s in ("train", "val", "test")}
    assert not any(dim in sizes for arr in reply.arrays.values() for dim in arr.shape)


def test_shared_weights_only_when_asked(eeg_site_data, tmp_path):
    reply = train_round(eeg_site_data, tmp_path, MODEL, FAST, PrivacyConfig(enabled=False), GlobalState(), share_weights=True)
    weights = {k for k in reply.arrays if k.startswith("weights.")}
    assert "weights.head.weight" in weights and reply.metrics["epsilon"] == float("inf")


def test_ledger_persists_and_grows_across_rounds(eeg_site_data, tmp_path):
    cfg = PrivacyConfig(epsilon=8.0)
    first = train_round(eeg_site_data, tmp_path, MODEL, FAST, cfg, GlobalState(), round_no=1)
    second = train_round(eeg_site_data, tmp_path, MODEL, FAST, cfg, GlobalState(), round_no=2)
    assert 0 < first.metrics["epsilon"] < second.metrics["epsilon"] <= 8.0
    stored = json.loads((tmp_path / LEDGER_FILE).read_text())
    assert stored["epsilon_spent"] == pytest.approx(second.metrics["epsilon"])
    assert stored["counts"]["prototype_release"] == 2


def test_a_round_asked_again_is_replayed_not_charged_twice(eeg_site_data, tmp_path):
    """A coordinator that restarts mid-round sends the round again: same reply, same epsilon, no new ledger entry."""
    cfg = PrivacyConfig(epsilon=8.0)
    first = train_round(eeg_site_data, tmp_path, MODEL, FAST, cfg, GlobalState(), round_no=1)
    events = len(json.loads((tmp_path / LEDGER_FILE).read_text())["events"])
    again = train_round(eeg_site_data, tmp_path, MODEL, FAST, cfg, GlobalState(), round_no=1)
    assert again.replayed and again.metrics == first.metrics
    assert np.array_equal(again.arrays["prototypes"], first.arrays["prototypes"])
    assert len(json.loads((tmp_path / LEDGER_FILE).read_text())["events"]) == events


def test_budget_exhausted_site_replies_with_an_empty_valid_release(eeg_site_data, tmp_path):
    cfg = PrivacyConfig(epsilon=8.0)
    plan = TrainConfig(local_epochs=1, planned_rounds=1)
    for rnd in range(1, 6):  # rounds beyond the plan eat what is left, then the site answers empty
        reply = train_round(eeg_site_data, tmp_path, MODEL, plan, cfg, GlobalState(), round_no=rnd,
                            report_train_loss=True)
    assert reply.metrics["epsilon"] <= 8.0
    assert reply.metrics["released_classes"] == 0 and not reply.arrays["prototypes"].any()
    assert "train_loss" not in reply.metrics  # no NaN loss that would fail the site's own check
    check_reply(reply.arrays, reply.metrics, ReplySpec(n_classes=5, embed_dim=16, epsilon_budget=8.0))


def test_release_noise_cannot_be_rebuilt_from_what_the_server_knows(eeg_site_data, tmp_path):
    """The landed code seeded the release from (site name, round) and DP-SGD from train.seed: rebuild both ways, and fail."""
    import torch

    from fedxalign.client.site_round import ENCODER_FILE, load_encoder
    from fedxalign.client.training import embed
    from fedxalign.shared.privacy.ledger import PrivacyLedger
    from fedxalign.shared.privacy.release import release_prototypes

    dp = PrivacyConfig(epsilon=8.0)
    a = train_round(eeg_site_data, tmp_path / "a", MODEL, FAST, dp, GlobalState(), round_no=1)
    b = train_round(eeg_site_data, tmp_path / "b", MODEL, FAST, dp, GlobalState(), round_no=1)
    wa, wb = (torch.load(tmp_path / d / ENCODER_FILE, weights_only=True) for d in ("a", "b"))
    assert any(not torch.equal(wa[k], wb[k]) for k in wa)  # same seed, same data: DP-SGD sampling and noise differ

    train = eeg_site_data.dataset("train")
    z = embed(load_encoder(tmp_path / "a", MODEL, eeg_site_data.site.name, None), train.x)  # exactly what site a released from
    y = train.y.numpy()
    server_rng = np.random.default_rng([site_seed(eeg_site_data.site.name), 1])
    rebuilt = release_prototypes(z, y, 5, dp.proto_clip, dp.proto_noise_multiplier, dp.min_count, server_rng,
                                 PrivacyLedger(tmp_path / "audit.json", PrivacyConfig(epsilon=100.0)))
    assert not np.allclose(rebuilt.counts, a.arrays["counts"], atol=1e-3)
    assert not np.allclose(a.arrays["counts"], b.arrays["counts"], atol=1e-3)
    exact = np.bincount(y, minlength=5).astype(np.float32)
    released = a.arrays["counts"] > 0
    assert np.abs(a.arrays["counts"] - exact)[released].max() > 1e-2  # the released counts carry noise


def test_a_site_with_earlier_work_but_no_ledger_refuses(eeg_site_data, tmp_path):
    train_round(eeg_site_data, tmp_path, MODEL, FAST, PrivacyConfig(), GlobalState(), round_no=1)
    (tmp_path / LEDGER_FILE).unlink()
    (tmp_path / (LEDGER_FILE + ".head")).unlink()
    with pytest.raises(LedgerIntegrityError, match="earlier work"):
        train_round(eeg_site_data, tmp_path, MODEL, FAST, PrivacyConfig(), GlobalState(), round_no=2)


def test_allow_list_refuses_sample_sized_or_unknown_content():
    ok = {"prototypes": np.zeros((5, 16), np.float32), "counts": np.zeros(5, np.float32)}
    metrics = {"epsilon": 1.0, "delta": 1e-5, "epsilon_budget": 8.0, "released_classes": 0.0}
    spec = ReplySpec(n_classes=5, embed_dim=16, epsilon_budget=8.0, forbidden_sizes=frozenset({120}))
    check_reply(ok, metrics, spec)
    with pytest.raises(DisallowedReply, match="not in the documented message"):
        check_reply(ok | {"embeddings": np.zeros((120, 16))}, metrics, spec)
    with pytest.raises(DisallowedReply, match="metric 'labels_hash'"):
        check_reply(ok, metrics | {"labels_hash": 3.0}, spec)
    with pytest.raises(DisallowedReply, match="shape"):
        check_reply(ok | {"prototypes": np.zeros((120, 16))}, metrics, spec)
    with pytest.raises(DisallowedReply, match="missing"):
        check_reply({"prototypes": ok["prototypes"]}, metrics, spec)
    with pytest.raises(DisallowedReply, match="non-finite"):
        check_reply(ok | {"counts": np.full(5, np.nan, np.float32)}, metrics, spec)
    with pytest.raises(DisallowedReply, match="finite bounded scalar"):
        check_reply(ok, metrics | {"epsilon": np.zeros(120)}, spec)


def test_a_new_broadcast_for_a_seen_round_number_is_a_new_request(eeg_site_data, tmp_path):
    cfg = PrivacyConfig(epsilon=8.0)
    train_round(eeg_site_data, tmp_path, MODEL, FAST, cfg, GlobalState(), round_no=1)
    anchors = np.eye(5, 16, dtype=np.float32)
    other = train_round(eeg_site_data, tmp_path, MODEL, FAST, cfg, GlobalState(anchors, np.ones(5, bool)), round_no=1)
    assert not other.replayed  # another federation's round 1 is not answered with this one's


def test_the_policy_caps_how_many_rounds_a_site_takes_part_in(eeg_site_data, tmp_path):
    from fedxalign.shared.privacy.policy import PolicyRefusal

    cfg = PrivacyConfig(epsilon=8.0)
    train_round(eeg_site_data, tmp_path, MODEL, FAST, cfg, GlobalState(), round_no=1, max_releases=1)
    assert train_round(eeg_site_data, tmp_path, MODEL, FAST, cfg, GlobalState(), round_no=1, max_releases=1).replayed
    with pytest.raises(PolicyRefusal, match="max_rounds"):
        train_round(eeg_site_data, tmp_path, MODEL, FAST, cfg, GlobalState(), round_no=2, max_releases=1)


def test_a_federated_pretraining_round_spends_budget_trains_the_encoder_and_releases_no_prototype(eeg_site_data, tmp_path):
    import torch

    from fedxalign.client.site_round import load_encoder

    cfg = PrivacyConfig(epsilon=8.0)
    before = load_encoder(tmp_path, MODEL, eeg_site_data.site.name, None).state_dict()
    reply = train_round(eeg_site_data, tmp_path, MODEL, FAST, cfg, GlobalState(), share_weights=True, round_no=1,
                        objective="reconstruction")
    assert not reply.arrays["counts"].any() and not reply.arrays["prototypes"].any() and reply.metrics["released_classes"] == 0
    assert reply.report.steps > 0 and 0 < reply.metrics["epsilon"] <= 8.0  # the DP-SGD steps are in the ledger
    stored = json.loads((tmp_path / LEDGER_FILE).read_text())
    assert "prototype_release" not in stored["counts"]
    # the reconstruction part trained; the classification head did not
    w = {k[len("weights."):]: torch.from_numpy(v) for k, v in reply.arrays.items() if k.startswith("weights.")}
    assert not torch.equal(w["proj_out.0.weight"], before["proj_out.0.weight"])
    assert torch.equal(w["head.weight"], before["head.weight"])
    check_reply(reply.arrays, reply.metrics, ReplySpec(n_classes=5, embed_dim=16, weight_shapes={k: tuple(v.shape) for k, v in w.items()},
                                                       epsilon_budget=8.0))


def test_a_second_message_waits_for_the_round_in_progress(eeg_site_data, tmp_path, monkeypatch):
    """Two processes spending from one ledger at once would each write their own total and drop the other's."""
    import threading

    import fedxalign.client.site_round as site_round
    from fedxalign.shared.folder_lock import exclusive

    entered, done = threading.Event(), []
    first_step = site_round.cached_reply  # the first thing a round does with the folder

    def watched(*args):
        entered.set()
        return first_step(*args)

    monkeypatch.setattr(site_round, "cached_reply", watched)
    with exclusive(tmp_path):  # a round in progress (for flock, its own open file is another holder)
        worker = threading.Thread(target=lambda: done.append(
            train_round(eeg_site_data, tmp_path, MODEL, FAST, PrivacyConfig(), GlobalState(), round_no=1)))
        worker.start()
        assert not entered.wait(timeout=3.0)  # it waits before it reads anything
    worker.join(timeout=120)
    assert entered.is_set() and done and json.loads((tmp_path / LEDGER_FILE).read_text())["epsilon_spent"] > 0
