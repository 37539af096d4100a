import numpy as np

from fedxalign.server.strategy import ServerState, SiteResult, aggregate_round
from fedxalign.shared.protocol import WEIGHT_PREFIX
from fedxalign.shared.runconfig import AlignConfig, FederationConfig, RunSettings
from fedxalign.shared.data.config import DataConfig, PreprocessConfig
from fedxalign.shared.models.encoder import EncoderConfig
from fedxalign.shared.privacy.config import PrivacyConfig
from fedxalign.shared.train_config import TrainConfig


def settings(keep: float = AlignConfig.keep, **fed):
    return RunSettings(FederationConfig(**({"share_weights": False} | fed)), AlignConfig(steps=100, keep=keep),
                       DataConfig(("a", "b", "c"), {"eeg": PreprocessConfig(), "ecg": PreprocessConfig()}),
                       EncoderConfig(embed_dim=4), TrainConfig(), PrivacyConfig())


def result(site, modality, seed, weight_value=None):
    rng = np.random.default_rng(seed)
    arrays = {"prototypes": rng.standard_normal((3, 4)).astype(np.float32), "counts": np.full(3, 20.0, np.float32)}
    if weight_value is not None:
        arrays[WEIGHT_PREFIX + "w"] = np.full(2, weight_value, np.float32)
    return SiteResult(site, modality, arrays, {"epsilon": 1.0, "train_loss": 1.5})


def test_round_goes_on_without_a_failed_site():
    results = [result("e1", "eeg", 0), result("e2", "eeg", 1), result("c1", "ecg", 2)]  # c2 failed
    state, summary = aggregate_round(ServerState(), results, settings())
    assert summary.n_sites == 3 and summary.sites == ["c1", "e1", "e2"]
    assert state.round == 1 and set(state.anchors) == {"eeg", "ecg"}
    assert np.allclose(state.anchors["eeg"], state.anchors["ecg"])  # one shared space after alignment
    assert state.heads["ecg"].shape == (4, 4)


def test_weights_average_only_within_a_modality():
    results = [result("e1", "eeg", 0, 1.0), result("e2", "eeg", 1, 3.0), result("c1", "ecg", 2, 100.0)]
    state, _ = aggregate_round(ServerState(), results, settings(share_weights=True))
    assert np.allclose(state.weights["eeg"]["w"], 2.0)
    assert np.allclose(state.weights["ecg"]["w"], 100.0)
    assert state.global_for("ecg", True).weights["w"][0] == 100.0
    assert state.global_for("ecg", False).weights is None


def test_without_alignment_each_modality_keeps_its_own_anchors():
    s = settings()
    s = RunSettings(s.federation, AlignConfig(enabled=False), s.data, s.model, s.train, s.privacy)
    state, summary = aggregate_round(ServerState(), [result("e1", "eeg", 0), result("c1", "ecg", 2)], s)
    assert not np.allclose(state.anchors["eeg"], state.anchors["ecg"])
    assert summary.alignment_before == summary.alignment_after


def test_checkpoint_round_trip(tmp_path):
    state, _ = aggregate_round(ServerState(), [result("e1", "eeg", 0, 1.0), result("c1", "ecg", 2, 2.0)], settings(share_weights=True))
    state.save(tmp_path / "ckpt.npz")
    back = ServerState.load(tmp_path / "ckpt.npz")
    assert back.round == 1
    for m in ("eeg", "ecg"):
        assert np.array_equal(back.anchors[m], state.anchors[m]) and np.array_equal(back.heads[m], state.heads[m])
        assert np.array_equal(back.present[m], state.present[m]) and np.array_equal(back.weights[m]["w"], state.weights[m]["w"])


def test_resumed_run_appends_to_its_logs(tmp_path):
    from fedxalign.server.federation_loop import RunLog

    first = RunLog(rounds=[{"round": 1}], sites=[{"round": 1, "site": "a", "epsilon": 1.0}], evals=[])
    first.write(tmp_path)
    again = RunLog.load(tmp_path)
    again.rounds.append({"round": 2})
    again.sites.append({"round": 2, "site": "a", "epsilon": 2.0})
    again.write(tmp_path)
    back = RunLog.load(tmp_path)
    assert [r["round"] for r in back.rounds] == [1, 2] and [r["epsilon"] for r in back.sites] == ["1.0", "2.0"]


def test_a_round_with_no_release_keeps_the_previous_anchors():
    s = settings()
    state, _ = aggregate_round(ServerState(), [result("e1", "eeg", 0), result("c1", "ecg", 2)], s)
    empty = [SiteResult(r, m, {"prototypes": np.zeros((3, 4), np.float32), "counts": np.zeros(3, np.float32)}, {"epsilon": 8.0})
             for r, m in (("e1", "eeg"), ("c1", "ecg"))]
    after, summary = aggregate_round(state, empty, s)
    assert after.round == 2 and np.isnan(summary.alignment_after)
    for m in ("eeg", "ecg"):
        assert np.array_equal(after.anchors[m], state.anchors[m]) and np.array_equal(after.heads[m], state.heads[m])


def test_a_class_nobody_released_keeps_its_previous_anchor():
    s = settings()
    state, _ = aggregate_round(ServerState(), [result("e1", "eeg", 0), result("c1", "ecg", 2)], s)
    partial = [result("e1", "eeg", 5), result("c1", "ecg", 6)]
    for r in partial:
        r.arrays["counts"][2] = 0.0
        r.arrays["prototypes"][2] = 0.0
    after, _ = aggregate_round(state, partial, s)
    cos = float(after.anchors["eeg"][2] @ state.anchors["eeg"][2])
    assert cos > 0.9  # refined by the alignment, but from the old anchor, not a random vector


def test_non_finite_aggregates_never_reach_the_broadcast():
    s = settings(share_weights=True)
    state, _ = aggregate_round(ServerState(), [result("e1", "eeg", 0, 1.0), result("c1", "ecg", 2, 2.0)], s)
    bad = [result("e1", "eeg", 3, np.inf), result("c1", "ecg", 4, 2.0)]  # slipped past every check, somehow
    after, _ = aggregate_round(state, bad, s)
    assert np.array_equal(after.weights["eeg"]["w"], state.weights["eeg"]["w"])
    assert all(np.all(np.isfinite(a)) for a in after.anchors.values())


def test_the_compounded_head_stays_a_rotation_over_many_rounds():
    # prototypes that need a shear to match: without re-orthogonalisation the product of
    # per-round maps drifts toward a singular matrix (condition number grows round after round)
    state = ServerState()
    conds = []
    for rnd in range(12):
        results = [result("e1", "eeg", 100 + rnd), result("c1", "ecg", 200 + rnd)]
        results[1].arrays["prototypes"] = results[1].arrays["prototypes"] * np.array([5.0, 1.0, 0.2, 0.05], np.float32)
        state, summary = aggregate_round(state, results, settings())
        conds.append(summary.head_condition["ecg"])
    head = state.heads["ecg"]
    assert np.allclose(head @ head.T, np.eye(4), atol=1e-5)
    assert max(conds) < 1.0 + 1e-4


def test_polar_factor_is_the_nearest_rotation():
    from fedxalign.server.strategy import condition_number, polar_factor

    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    shear = q @ np.diag([3.0, 1.0, 0.5, 0.01])
    assert condition_number(shear) > 100
    p = polar_factor(shear)
    assert np.allclose(p @ p.T, np.eye(4), atol=1e-5)
    assert np.allclose(polar_factor(q), q, atol=1e-5)  # a rotation is its own polar factor


def paired_result(site, seed, eeg_w, ecg_w, fusion_w):
    rng = np.random.default_rng(seed)
    arrays = {"eeg.prototypes": rng.standard_normal((3, 4)).astype(np.float32),
              "ecg.prototypes": rng.standard_normal((3, 4)).astype(np.float32), "counts": np.full(3, 20.0, np.float32),
              "eeg.weights.w": np.full(2, eeg_w, np.float32), "ecg.weights.w": np.full(2, ecg_w, np.float32),
              "fusion.out": np.full(3, fusion_w, np.float32)}
    return SiteResult(site, "paired", arrays, {"epsilon": 1.0, "train_loss": 1.5})


def test_a_paired_site_counts_in_each_modality_and_its_fusion_head_among_paired_sites_only():
    from fedxalign.shared.protocol import unpack_paired_global

    results = [result("e1", "eeg", 0, 1.0), result("c1", "ecg", 2, 100.0), paired_result("p1", 3, 3.0, 50.0, 7.0),
               paired_result("p2", 4, 3.0, 50.0, 9.0)]
    state, summary = aggregate_round(ServerState(), results, settings(share_weights=True, aggregator="mean"))
    assert summary.n_sites == 4 and summary.sites == ["c1", "e1", "p1", "p2"]  # nodes, not halves
    assert np.allclose(state.weights["eeg"]["w"], (1.0 + 3.0 + 3.0) / 3) and np.allclose(state.weights["ecg"]["w"], 200.0 / 3)
    assert np.allclose(state.fusion["out"], 8.0)
    sent = state.broadcast_for("paired", share_weights=True)
    globs, fusion = unpack_paired_global(sent, 3, 4, {m: {"w": (2,)} for m in ("eeg", "ecg")}, {"out": (3,)})
    assert np.allclose(globs["ecg"].weights["w"], 200.0 / 3) and np.allclose(fusion["out"], 8.0)
    assert np.allclose(globs["eeg"].anchors, state.anchors["eeg"]) and globs["ecg"].head.shape == (4, 4)
    assert not any(k.startswith("fusion.") for k in state.broadcast_for("paired", share_weights=False))
    assert "fusion.out" not in state.broadcast_for("eeg", share_weights=True)  # single sites never get it


def noisy_rounds(keep: float, rounds: int = 10, noise: float = 0.3):
    """The same true prototypes released each round with fresh noise; the ECG side is a rotation of the EEG side."""
    rng = np.random.default_rng(7)
    true = rng.standard_normal((3, 4))
    rot, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    s = settings(keep=keep)
    state, anchors = ServerState(), []
    for _ in range(rounds):
        eeg = SiteResult("e1", "eeg", {"prototypes": (true + noise * rng.standard_normal((3, 4))).astype(np.float32),
                                       "counts": np.full(3, 20.0, np.float32)}, {"epsilon": 1.0})
        ecg_true = true @ rot.T @ state.heads.get("ecg", np.eye(4)).T  # what the site sends: its embeddings after the head
        ecg = SiteResult("c1", "ecg", {"prototypes": (ecg_true + noise * rng.standard_normal((3, 4))).astype(np.float32),
                                       "counts": np.full(3, 20.0, np.float32)}, {"epsilon": 1.0})
        state, _ = aggregate_round(state, [eeg, ecg], s)
        anchors.append(state.anchors["eeg"])
    return state, np.array(anchors), true


def test_the_first_round_takes_the_whole_fit_whatever_is_kept():
    first = [aggregate_round(ServerState(), [result("e1", "eeg", 0), result("c1", "ecg", 2)], settings(keep=keep))[0]
             for keep in (0.0, 0.9)]
    assert np.allclose(first[0].anchors["eeg"], first[1].anchors["eeg"]) and np.allclose(first[0].heads["ecg"], first[1].heads["ecg"])


def test_keeping_part_of_the_last_round_steadies_the_anchors_and_head_under_release_noise():
    plain_state, plain, true = noisy_rounds(keep=0.0)
    kept_state, kept, _ = noisy_rounds(keep=0.6)
    step = lambda a: np.linalg.norm(np.diff(a[1:], axis=0), axis=(1, 2)).mean()  # noqa: E731
    assert step(kept) < 0.7 * step(plain)
    unit = true / np.linalg.norm(true, axis=1, keepdims=True)
    error = lambda a: np.linalg.norm(a[-4:] - unit, axis=2).mean()  # noqa: E731  last rounds' distance from the noiseless anchors
    assert error(kept) < error(plain)
    head = kept_state.heads["ecg"]
    assert np.allclose(head @ head.T, np.eye(4), atol=1e-5)  # still a rotation


def test_the_damped_anchors_stay_one_set_for_every_modality_after_a_round_one_modality_missed():
    s = settings(keep=0.5)
    state, _ = aggregate_round(ServerState(), [result("e1", "eeg", 0), result("c1", "ecg", 2)], s)
    state, _ = aggregate_round(state, [result("e1", "eeg", 3), result("e2", "eeg", 4)], s)  # no ECG site answered
    state, _ = aggregate_round(state, [result("e1", "eeg", 5), result("c1", "ecg", 6)], s)
    assert np.array_equal(state.anchors["eeg"], state.anchors["ecg"])
