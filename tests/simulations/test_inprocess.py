"""The baselines' in-process drivers treat a paired folder as one node, as the main run does, and are scored on its encoders."""

import json

import numpy as np
import torch

from fedxalign.client.node import state_dir
from fedxalign.client.site_round import PAIRED_ENCODER_FILES, load_encoder
from fedxalign.client.training import embed
from fedxalign.simulations.evaluate import from_states
from fedxalign.simulations.inprocess import run_federated, run_local_only, unaligned_fedavg_settings
from fedxalign.simulations.settings import run_settings
from tests.conftest import compose_config


def small_settings(tmp_path):
    return run_settings(compose_config("simulate", [
        f"federation.results_dir={tmp_path}", "federation.rounds=1", "training.local_epochs=1", "privacy.min_count=2",
        "privacy.proto_noise_multiplier=3", "pretraining.source=none"]))


def test_local_only_trains_a_paired_site_as_one_node_and_scores_its_own_encoders(paired_data, tmp_path):
    settings = small_settings(tmp_path)
    run_local_only([], settings, tmp_path / "local", [paired_data])
    folder = state_dir(tmp_path / "local", paired_data.name)
    ledger = json.loads((folder / "ledger.json").read_text())
    assert ledger["counts"]["prototype_release"] == 1 and all((folder / f).is_file() for f in PAIRED_ENCODER_FILES.values())
    halves = [paired_data.eeg, paired_data.ecg]
    embs = from_states(halves, settings, tmp_path / "local", None, anchor_key="site", paired={paired_data.name})
    for e, half in zip(embs, halves):
        m = half.site.modality
        trained = load_encoder(folder, settings.model_for(m), f"{paired_data.name}/{m}", None, PAIRED_ENCODER_FILES[m])
        np.testing.assert_allclose(e.z, embed(trained, half.dataset("test").x, None), atol=1e-5)
    assert np.allclose(embs[0].anchors, embs[1].anchors)  # one space for both modalities of the site


def test_fedavg_takes_a_paired_reply_into_both_modalities_and_the_fusion_average(paired_data, tmp_path):
    settings = unaligned_fedavg_settings(small_settings(tmp_path))
    state = run_federated([], settings, tmp_path / "fedavg", "fedavg", [paired_data])
    assert set(state.weights) == {"eeg", "ecg"} and state.fusion
    sent = torch.from_numpy(np.asarray(state.weights["eeg"]["head.weight"]))
    assert torch.isfinite(sent).all()
