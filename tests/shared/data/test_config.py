import pytest

from fedxalign.shared.data.config import PreprocessConfig, SiteConfig
from fedxalign.shared.errors import ConfigError


def site(**kw):
    base = dict(name="s", modality="eeg", format="edf", label_map={"a": "W"})
    return SiteConfig.from_mapping(base | kw)


def test_bad_format_names_allowed_values():
    with pytest.raises(ConfigError, match=r"'format' parameter. Allowed values are 'edf', 'bdf', 'wfdb', but got 'csv'"):
        site(format="csv")


def test_unknown_setting_is_refused():
    with pytest.raises(ConfigError, match="unknown site setting"):
        site(chanels=["Cz"])


def test_empty_label_map_is_refused():
    with pytest.raises(ConfigError, match="label_map is empty"):
        site(label_map={})


def test_cutoff_above_nyquist_is_refused():
    with pytest.raises(ConfigError, match="Nyquist"):
        PreprocessConfig(sfreq=50.0, h_freq=30.0)


def test_site_yaml_round_trip(tmp_path):
    s = site(channels=["Cz", "Pz"], label_source="hypnogram")
    s.write(tmp_path)
    assert SiteConfig.from_site_dir(tmp_path) == s


def test_missing_site_yaml_names_the_file(tmp_path):
    with pytest.raises(ConfigError, match="site.yaml"):
        SiteConfig.from_site_dir(tmp_path)
