"""A paired site: one DP-SGD run over pairs whose per-pair gradients are exact, one ledger, one checked reply."""

import json

import numpy as np
import pytest
import torch
from opacus import GradSampleModule

from fedxalign.client.paired_round import PairedModel, paired_loss, train_paired_round
from fedxalign.client.site_round import LEDGER_FILE, local_anchors
from fedxalign.client.training import TrainConfig
from fedxalign.shared.models.encoder import EncoderConfig, build_encoder
from fedxalign.shared.models.fusion import FusionConfig, build_fusion
from fedxalign.shared.models.window_inputs import WithWindowInputs
from fedxalign.shared.privacy.config import PrivacyConfig
from fedxalign.shared.privacy.release import effective_release_sigma
from fedxalign.shared.protocol import DisallowedReply, GlobalState, ReplySpec, check_reply, reply_problems

FAST = TrainConfig(local_epochs=1, planned_rounds=3)
NONE = {"eeg": GlobalState(), "ecg": GlobalState()}


def _cfgs(paired_data):
    small = EncoderConfig(d_model=16, n_heads=2, n_layers=1, embed_dim=16, dropout=0.0)  # dropout would differ per call
    pre = paired_data.eeg.preprocess, paired_data.ecg.preprocess
    return {m: EncoderConfig(**{**small.__dict__, "modality": m, "patch_samples": p.patch_samples, "sfreq": p.sfreq})
            for m, p in zip(("eeg", "ecg"), pre)}


@pytest.mark.parametrize("patch_weight, precomputed", [(0.0, False), (1.0, False), (0.0, True)])
def test_opacus_per_pair_gradients_are_each_pairs_own(paired_data, patch_weight, precomputed):
    """Every term (prototypes, sample- and patch-level contrastive, fusion) depends on the pair alone, so clipping bounds a pair."""
    cfgs = _cfgs(paired_data)
    model = PairedModel(build_encoder(cfgs["eeg"], seed=0), build_encoder(cfgs["ecg"], seed=1), build_fusion(5, "gated", seed=2))
    anchors = {m: torch.from_numpy(local_anchors("shared", 5, 16)) for m in ("eeg", "ecg")}
    present = {m: torch.ones(5, dtype=torch.bool) for m in ("eeg", "ecg")}
    heads = {m: torch.linalg.qr(torch.randn(16, 16, generator=torch.Generator().manual_seed(3)))[0] for m in ("eeg", "ecg")}
    fusion_cfg = FusionConfig(modality_dropout=0.0, patch_weight=patch_weight)
    loss_fn = paired_loss(anchors, present, heads, FAST, fusion_cfg, sample_level=True)
    ds = paired_data.dataset("train")
    batch = [ds.x_eeg[:4], ds.x_ecg[:4], ds.y[:4]]
    if precomputed:  # as a paired round trains: both encoders' parameter-free inputs in the batch
        with_inputs = WithWindowInputs([ds.x_eeg[:4], ds.x_ecg[:4]], [model.eeg, model.ecg], ds.y[:4])
        batch = torch.utils.data.default_collate([with_inputs[i] for i in range(4)])
        assert len(batch) == 9
    if patch_weight:  # the patch-level term is in the loss
        without = paired_loss(anchors, present, heads, FAST, FusionConfig(modality_dropout=0.0), sample_level=True)
        assert loss_fn(model, batch).item() > without(model, batch).item()
    gsm = GradSampleModule(model)
    loss_fn(gsm, batch).backward()
    per_pair = {n.removeprefix("_module."): p.grad_sample.detach().clone() for n, p in gsm.named_parameters()
                if getattr(p, "grad_sample", None) is not None}
    gsm._close()
    assert any(n.startswith("fusion.masked") for n in per_pair) and any(n.startswith("ecg.encoder") for n in per_pair)
    for i in range(4):
        model.zero_grad(set_to_none=True)
        loss_fn(model, [b[i:i + 1] for b in batch]).backward()
        for n, p in model.named_parameters():
            if p.grad is not None and p.grad.abs().sum() > 0:  # every parameter a pair moves has its per-pair gradient
                torch.testing.assert_close(per_pair[n][i], p.grad, rtol=1e-4, atol=1e-5)


def test_a_paired_site_is_one_node_with_one_ledger_and_one_joint_release(paired_data, tmp_path):
    cfgs = _cfgs(paired_data)
    privacy = PrivacyConfig(epsilon=8.0)
    reply = train_paired_round(paired_data, tmp_path, cfgs, FAST, privacy, FusionConfig(), NONE, share_weights=True, round_no=1)
    assert {"eeg.prototypes", "ecg.prototypes", "counts"} <= set(reply.arrays)
    assert any(k.startswith("fusion.") for k in reply.arrays) and any(k.startswith("ecg.weights.") for k in reply.arrays)
    assert sorted(p.name for p in tmp_path.glob("*.json")) == [LEDGER_FILE]
    ledger = json.loads((tmp_path / LEDGER_FILE).read_text())
    assert ledger["counts"]["prototype_release"] == 1  # both modalities in ONE release
    releases = [e for e in ledger["events"] if e.get("kind") == "prototype_release"]
    assert releases and releases[0]["sigma"] == pytest.approx(effective_release_sigma(privacy.proto_noise_multiplier, parts=2))
    second = train_paired_round(paired_data, tmp_path, cfgs, FAST, privacy, FusionConfig(), NONE, share_weights=True, round_no=2)
    assert reply.metrics["epsilon"] < second.metrics["epsilon"] <= 8.0


def test_a_paired_federated_pretraining_round_trains_both_encoders_in_one_ledger_and_releases_nothing(paired_data, tmp_path):
    from fedxalign.client.paired_round import load_paired_model

    cfgs = _cfgs(paired_data)
    before = load_paired_model(paired_data, tmp_path, cfgs, FusionConfig(), {"eeg": None, "ecg": None}, None, True)
    reply = train_paired_round(paired_data, tmp_path, cfgs, FAST, PrivacyConfig(epsilon=8.0), FusionConfig(), NONE,
                               share_weights=True, round_no=1, objective="reconstruction")
    assert not reply.arrays["counts"].any() and not reply.arrays["eeg.prototypes"].any() and not reply.arrays["ecg.prototypes"].any()
    assert reply.report.steps > 0 and 0 < reply.metrics["epsilon"] <= 8.0
    ledger = json.loads((tmp_path / LEDGER_FILE).read_text())
    assert "prototype_release" not in ledger["counts"] and ledger["counts"]["dp_sgd_step"] == reply.report.steps
    for m in ("eeg", "ecg"):  # both reconstructions trained; the classification head and the fusion head did not
        w = {k[len(f"{m}.weights."):]: torch.from_numpy(v) for k, v in reply.arrays.items() if k.startswith(f"{m}.weights.")}
        old = getattr(before, m).state_dict()
        assert not torch.equal(w["proj_out.0.weight"], old["proj_out.0.weight"]) and torch.equal(w["head.weight"], old["head.weight"])
    fused = {k[len("fusion."):]: torch.from_numpy(v) for k, v in reply.arrays.items() if k.startswith("fusion.")}
    assert all(torch.equal(fused[k], v) for k, v in before.fusion.state_dict().items())


def test_the_paired_reconstruction_gradient_is_each_pairs_own(paired_data):
    from fedxalign.client.paired_round import paired_reconstruction_loss
    from fedxalign.shared.models.pretraining import set_pretrainable

    cfgs = _cfgs(paired_data)
    model = PairedModel(build_encoder(cfgs["eeg"], seed=0), build_encoder(cfgs["ecg"], seed=1), None)
    for m in ("eeg", "ecg"):
        set_pretrainable(getattr(model, m))
    ds = paired_data.dataset("train")
    batch = [ds.x_eeg[:3], ds.x_ecg[:3], ds.y[:3]]
    gsm = GradSampleModule(model)
    paired_reconstruction_loss(torch.Generator().manual_seed(0))(gsm, batch).backward()
    per_pair = {n.removeprefix("_module."): p.grad_sample.detach().clone() for n, p in gsm.named_parameters()
                if getattr(p, "grad_sample", None) is not None}
    gsm._close()
    assert any(n.startswith("eeg.proj_out") for n in per_pair) and any(n.startswith("ecg.proj_out") for n in per_pair)
    # each pair alone, with the masks the batch loss drew (the same generator state, replayed)
    from fedxalign.client.training import MASK
    from fedxalign.shared.models.pretraining import dual_mask, reconstruction_loss

    gen = torch.Generator().manual_seed(0)
    masks = [dual_mask(*x.shape[:3], MASK.mask_ratio, MASK.span_patches, gen) for x in batch[:2]]
    for i in range(3):
        model.zero_grad(set_to_none=True)
        (reconstruction_loss(model.eeg, batch[0][i:i + 1], masks[0][i:i + 1])
         + reconstruction_loss(model.ecg, batch[1][i:i + 1], masks[1][i:i + 1])).backward()
        for n, p in model.named_parameters():
            if p.grad is not None:
                torch.testing.assert_close(per_pair[n][i], p.grad, rtol=1e-4, atol=1e-5)  # Opacus undoes the batch mean


def test_a_paired_reply_passes_the_allow_list_with_both_modalities_and_nothing_else(paired_data, tmp_path):
    from tests.conftest import compose_config
    from fedxalign.simulations.settings import run_settings

    settings = run_settings(compose_config("simulate", [f"federation.results_dir={tmp_path}", "federation.rounds=3"]))
    cfgs = {m: settings.model_for(m) for m in ("eeg", "ecg")}
    reply = train_paired_round(paired_data, tmp_path / "site", cfgs, settings.train, settings.privacy, settings.fusion, NONE,
                               share_weights=True, round_no=1)
    records = {"release": ("array", reply.arrays), "metrics": ("metric", reply.metrics)}
    assert reply_problems("train", records, settings.reply_spec("paired")) == []
    assert reply_problems("train", records, settings.reply_spec("eeg"))  # a single-modality node may not send it
    extra = dict(reply.arrays, **{"eeg.embeddings": np.zeros((len(paired_data.y), 16), np.float32)})
    with pytest.raises(DisallowedReply):
        check_reply(extra, reply.metrics, settings.reply_spec("paired"))
    one_modality = {k: v for k, v in reply.arrays.items() if not k.startswith("ecg.")}
    with pytest.raises(DisallowedReply, match="missing"):
        check_reply(one_modality, reply.metrics, settings.reply_spec("paired"))


def test_without_server_anchors_the_sample_level_term_waits(paired_data, tmp_path):
    """Before alignment each modality has its own anchors; the pair term starts with the server's shared space.
    (No fusion head here: its random modality dropout would change each pair's clipping factor.)"""
    cfgs = _cfgs(paired_data)
    off = train_paired_round(paired_data, tmp_path / "a", cfgs, FAST, PrivacyConfig(enabled=False),
                             FusionConfig(enabled=False, pair_weight=0.0), NONE, round_no=1)
    on = train_paired_round(paired_data, tmp_path / "b", cfgs, FAST, PrivacyConfig(enabled=False),
                            FusionConfig(enabled=False, pair_weight=5.0), NONE, round_no=1)
    np.testing.assert_allclose(off.arrays["eeg.prototypes"], on.arrays["eeg.prototypes"], atol=1e-5)
    anchors = local_anchors("eeg", 5, 16)
    glob = {m: GlobalState(anchors=anchors, present=np.ones(5, bool)) for m in ("eeg", "ecg")}
    off2 = train_paired_round(paired_data, tmp_path / "c", cfgs, FAST, PrivacyConfig(enabled=False),
                              FusionConfig(enabled=False, pair_weight=0.0), glob, round_no=1)
    on2 = train_paired_round(paired_data, tmp_path / "d", cfgs, FAST, PrivacyConfig(enabled=False),
                             FusionConfig(enabled=False, pair_weight=5.0), glob, round_no=1)
    assert not np.allclose(off2.arrays["eeg.prototypes"], on2.arrays["eeg.prototypes"], atol=1e-4)


def test_single_modality_spec_still_takes_single_replies():
    spec = ReplySpec(n_classes=5, embed_dim=4)
    check_reply({"prototypes": np.zeros((5, 4), np.float32), "counts": np.zeros(5, np.float32)},
                {"epsilon": 1.0, "delta": 1e-5, "epsilon_budget": 8.0, "released_classes": 0.0}, spec)
