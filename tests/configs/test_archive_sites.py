"""The shipped archive site configs read sites generated in those archives' own layout, with no edits, and train."""

from pathlib import Path

import numpy as np
import yaml

from fedxalign.client.site_round import train_round
from fedxalign.client.training import TrainConfig
from fedxalign.shared.data.config import SiteConfig
from fedxalign.shared.data.site import load_site
from fedxalign.shared.data.synthetic.federation import FederationSpec, generate_federation
from fedxalign.shared.models.encoder import EncoderConfig
from fedxalign.shared.privacy.config import PrivacyConfig
from fedxalign.shared.protocol import GlobalState
from fedxalign.configs import CONFIG_DIR

MODEL = EncoderConfig(d_model=16, n_heads=2, n_layers=1, embed_dim=16)


def shipped(name: str) -> SiteConfig:
    return SiteConfig.from_mapping(yaml.safe_load((Path(CONFIG_DIR) / "sites" / name).read_text()))


def test_sleep_edf_layout_loads_through_the_shipped_config_and_trains(tmp_path, data_cfg):
    spec = FederationSpec.from_mapping({"seed": 3, "sites": [{
        "name": "sc", "modality": "eeg", "format": "edf", "label_source": "hypnogram", "label_style": "rk", "sfreq": 100,
        "channels": ["EEG Fpz-Cz", "EEG Pz-Oz"], "layout": "sleep_edf", "n_subjects": 3, "records_per_subject": 2,
        "hours_per_record": 0.15}]})
    generate_federation(spec, tmp_path, progress=False)
    folder = tmp_path / "sc"
    names = sorted(p.name for p in folder.glob("*.edf"))
    assert "SC4001E0-PSG.edf" in names and "SC4001EC-Hypnogram.edf" in names and "SC4022E0-PSG.edf" in names
    site = shipped("sleep-edf.yaml")
    data = load_site(folder, site, data_cfg.preprocess["eeg"], data_cfg.vocabulary, progress=False)
    assert data.ch_names == ["EEG Fpz-Cz", "EEG Pz-Oz"] and not data.skipped
    assert sorted(set(data.subject)) == ["00", "01", "02"]  # both nights of a subject: one subject
    assert set(data.unmapped) <= {"Movement time"}
    reply = train_round(data, tmp_path / "state", MODEL, TrainConfig(local_epochs=1, planned_rounds=2), PrivacyConfig(min_count=2),
                        GlobalState(), round_no=1)
    assert reply.metrics["released_classes"] >= 1 and np.all(np.isfinite(reply.arrays["prototypes"]))


def test_slpdb_layout_feeds_an_ecg_and_an_eeg_site_through_the_shipped_configs(tmp_path, data_cfg):
    spec = FederationSpec.from_mapping({"seed": 4, "sites": [{
        "name": "slpdb", "modality": "ecg", "format": "wfdb", "label_style": "mitbih", "sfreq": 250, "channels": ["ECG"],
        "layout": "slpdb", "n_subjects": 3, "records_per_subject": 2, "hours_per_record": 0.15}]})
    generate_federation(spec, tmp_path, progress=False)
    folder = tmp_path / "slpdb"
    assert sorted(p.stem for p in folder.glob("*.hea")) == ["slp01a", "slp01b", "slp02a", "slp02b", "slp03a", "slp03b"]
    notes = " ".join((folder / "slp01a.st").read_bytes().decode("latin-1", errors="ignore").split())
    assert any(f" {e}" in notes for e in ("OA", "HA", "CA"))  # events after the stage, as slpdb writes them
    for config, modality, channel in (("slpdb-ecg.yaml", "ecg", "ECG"), ("slpdb-eeg.yaml", "eeg", "EEG (C4-A1)")):
        site = shipped(config)
        data = load_site(folder, site, data_cfg.preprocess[modality], data_cfg.vocabulary, progress=False)
        assert data.ch_names == [channel] and not data.skipped
        assert sorted(set(data.subject)) == ["01", "02", "03"]
        assert not any(" " in k for k in data.unmapped)  # '2 OA' counted as stage 2, not as an unknown label
        reply = train_round(data, tmp_path / f"state_{modality}", MODEL.__class__(**{**MODEL.__dict__, "modality": modality}),
                            TrainConfig(local_epochs=1, planned_rounds=2), PrivacyConfig(min_count=2), GlobalState(), round_no=1)
        assert reply.metrics["released_classes"] >= 1


def test_a_short_simulation_of_archive_layout_sites_with_the_shipped_configs(tmp_path):
    """Sleep-EDF-named EEG and slpdb-named ECG sites, each described by its shipped config copied in unchanged."""
    import shutil

    from fedxalign.simulations.run import simulate
    from tests.conftest import compose_config

    fed = tmp_path / "fed"
    spec = FederationSpec.from_mapping({"seed": 6, "sites": [
        {"name": "sc", "modality": "eeg", "format": "edf", "label_source": "hypnogram", "label_style": "rk", "sfreq": 100,
         "channels": ["EEG Fpz-Cz", "EEG Pz-Oz"], "layout": "sleep_edf", "n_subjects": 4, "hours_per_record": 0.15},
        {"name": "slp", "modality": "ecg", "format": "wfdb", "label_style": "mitbih", "sfreq": 250, "channels": ["ECG"],
         "layout": "slpdb", "n_subjects": 4, "hours_per_record": 0.15}]})
    generate_federation(spec, fed, progress=False)
    shutil.copy(Path(CONFIG_DIR) / "sites" / "sleep-edf.yaml", fed / "sc" / "site.yaml")
    shutil.copy(Path(CONFIG_DIR) / "sites" / "slpdb-ecg.yaml", fed / "slp" / "site.yaml")
    out = tmp_path / "out"
    summary = simulate(compose_config("simulate", [
        f"federation.federation_dir={fed}", f"federation.results_dir={out}", f"paths.cache_dir={tmp_path / 'cache'}",
        "federation.rounds=2", "training.local_epochs=1", "baselines=[]", "plots=false", "privacy.min_count=2",
        "federation.min_sites=2", "pretraining.source=none"]))  # the public corpus and pretraining: test_pretrain.py
    assert [r["n_sites"] for r in summary["rounds"]] == [2, 2] and summary["epsilon_within_budget"]
    assert {p.name for p in (out / "state").iterdir()} == {"sleep-edf-sc", "slpdb-ecg"}
