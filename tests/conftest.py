"""Shared fixtures: Hydra-composed configs and tiny generated sites in real formats."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from fedxalign.shared.data.config import DataConfig
from fedxalign.simulations.generate import federation_spec
from fedxalign.configs import CONFIG_DIR
from fedxalign.shared.data.synthetic.federation import generate_federation

REAL_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"


def compose_config(name: str, overrides: list[str] | None = None):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        return compose(config_name=name, overrides=overrides or [])


@pytest.fixture(scope="session")
def data_cfg() -> DataConfig:
    cfg = compose_config("baseline")
    return DataConfig.from_mapping(OmegaConf.to_container(cfg.data, resolve=True))


@pytest.fixture(scope="session")
def tiny_federation(tmp_path_factory) -> Path:
    """The `tiny` federation (2 EEG + 2 ECG sites, 4 subjects x 6 min each), written once per session."""
    cfg = compose_config("generate", ["synthetic=tiny"])
    out = tmp_path_factory.mktemp("fed") / "tiny"
    generate_federation(federation_spec(cfg.synthetic), out, progress=False)
    return out


@pytest.fixture
def real_dir() -> Path:
    if not REAL_DIR.is_dir():
        pytest.skip(f"real recordings folder {REAL_DIR} is absent (it ships beside the checkout on this team's machines)")
    return REAL_DIR


@pytest.fixture(scope="session")
def eeg_site_data(tmp_path_factory, data_cfg):
    """One generated EEG site big enough to train on (6 subjects x 18 min), loaded as SiteData."""
    from fedxalign.shared.data.config import SiteConfig
    from fedxalign.shared.data.site import load_site
    from fedxalign.shared.data.synthetic.federation import FederationSpec

    root = tmp_path_factory.mktemp("train_site")
    spec = FederationSpec.from_mapping({"seed": 5, "sites": [{"name": "eeg_train", "modality": "eeg", "format": "edf",
                                                              "sfreq": 100, "channels": ["Fpz-Cz", "Pz-Oz"], "n_subjects": 6,
                                                              "hours_per_record": 0.3}]})
    generate_federation(spec, root, progress=False)
    site = SiteConfig.from_site_dir(root / "eeg_train")
    return load_site(root / "eeg_train", site, data_cfg.preprocess["eeg"], data_cfg.vocabulary, progress=False)


PAIRED_SPEC = {"seed": 3, "paired": [{"name": "psg", "eeg": {"format": "edf", "sfreq": 100, "channels": ["C4-M1", "O2-M1"],
                                                          "n_subjects": 4, "hours_per_record": 0.15},
                                      "ecg": {"format": "wfdb", "sfreq": 200, "channels": ["ECG"]}}]}


@pytest.fixture(scope="session")
def paired_folder(tmp_path_factory) -> Path:
    """A generated paired site (EEG + ECG of the same 4 subjects, 9 min each), as its folder with paired.yaml."""
    from fedxalign.shared.data.synthetic.federation import FederationSpec

    root = tmp_path_factory.mktemp("paired")
    generate_federation(FederationSpec.from_mapping(PAIRED_SPEC), root, progress=False)
    return root / "psg"


@pytest.fixture(scope="session")
def paired_data(paired_folder, data_cfg):
    from fedxalign.shared.data.paired import load_paired_site

    return load_paired_site(paired_folder, data_cfg)
