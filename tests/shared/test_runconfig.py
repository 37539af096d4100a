import pytest

from fedxalign.shared.errors import ConfigError
from fedxalign.shared.runconfig import AlignConfig, RunSettings
from fedxalign.simulations.settings import run_settings
from tests.conftest import compose_config


def settings():
    return run_settings(compose_config("simulate", ["federation.results_dir=/tmp/r"]))


def test_flat_round_trip_is_lossless():
    s = settings()
    flat = s.to_flat()
    assert all(isinstance(v, (str, int, float, bool)) for v in flat.values())
    assert RunSettings.from_flat(flat) == s
    assert flat["privacy.epsilon"] == 8.0 and flat["data.vocabulary"] == "W,N1,N2,N3,REM"
    assert flat["preprocess.eeg.notch"] == "none"


def test_unknown_flat_key_is_refused():
    flat = settings().to_flat() | {"privacy.epsilonn": 3.0}
    with pytest.raises(ConfigError, match="privacy.epsilonn"):
        RunSettings.from_flat(flat)


def test_hydra_overrides_reach_the_typed_settings():
    s = run_settings(compose_config("simulate", ["federation.results_dir=/tmp/r", "privacy.epsilon=3", "federation.rounds=2",
                                                 "alignment.enabled=false"]))
    assert s.privacy.epsilon == 3 and s.federation.rounds == 2 and s.train.planned_rounds == 2 and not s.align.enabled


def test_pyproject_flower_config_matches_the_hydra_defaults():
    """`flwr run` reads [tool.flwr.app.config]; it must say what the Hydra defaults say."""
    import tomllib
    from pathlib import Path

    flat = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    expected = run_settings(compose_config("simulate", ["federation.results_dir=results/flwr-run"]))
    assert RunSettings.from_flat(flat) == expected
    assert sorted(flat) == sorted(expected.to_flat())  # every key there, so `--run-config` can set each one


def test_infinite_epsilon_means_no_dp():
    s = run_settings(compose_config("simulate", ["federation.results_dir=/tmp/r", "privacy.epsilon=inf"]))
    assert not s.privacy.enabled


def test_per_modality_overrides_survive_the_flat_run_config_and_patch_length_follows_the_preprocessing():
    from hydra import compose, initialize_config_dir

    from fedxalign.shared.errors import ConfigError
    from fedxalign.configs import CONFIG_DIR
    from fedxalign.simulations.settings import run_settings

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        cfg = compose("simulate", overrides=["+training.by_modality.ecg.lr=0.2", "model.by_modality.ecg.global_bins=50",
                                             "data.preprocess.ecg.patch_s=2.0", "federation.results_dir=x"])
    s = run_settings(cfg)
    assert s.train_for("ecg").lr == 0.2 and s.train_for("eeg").lr == s.train.lr
    assert s.model_for("ecg").global_bins == 50 and s.model_for("eeg").global_bins == cfg.model.by_modality.eeg.global_bins != 50
    assert s.model_for("ecg").patch_samples == 200 and s.model_for("eeg").patch_samples == 100
    back = RunSettings.from_flat(s.to_flat())
    assert back == s and back.model_for("ecg") == s.model_for("ecg")
    with pytest.raises(ConfigError, match="embed_dim"):
        RunSettings.from_flat(s.to_flat() | {"model.ecg.embed_dim": 16})
    with pytest.raises(ConfigError, match="unknown run_config key"):
        RunSettings.from_flat(s.to_flat() | {"train.ecg.learning_rate": 0.1})


def test_the_dataclass_defaults_are_the_shipped_yaml_defaults():
    """A unit test that builds a config class bare gets the model a run uses (paths aside: the entry point fills them)."""
    import dataclasses

    from fedxalign.shared.models.encoder import EncoderConfig
    from fedxalign.shared.models.fusion import FusionConfig
    from fedxalign.shared.privacy.config import PrivacyConfig
    from fedxalign.shared.runconfig import AlignConfig, FederationConfig
    from fedxalign.shared.train_config import TrainConfig

    s = settings()
    paths = {"results_dir", "federation_dir", "cache_dir"}
    differ = [f"{name}.{f.name}: {getattr(cls(), f.name)!r} vs YAML {getattr(getattr(s, name), f.name)!r}"
              for name, cls in (("federation", FederationConfig), ("align", AlignConfig), ("model", EncoderConfig),
                                ("train", TrainConfig), ("privacy", PrivacyConfig), ("fusion", FusionConfig))
              for f in dataclasses.fields(cls)
              if f.name not in paths and getattr(cls(), f.name) != getattr(getattr(s, name), f.name)]
    assert differ == []


def test_rounds_live_in_one_key():
    s = settings()
    assert "train.planned_rounds" not in s.to_flat() and s.train.planned_rounds == s.federation.rounds
    with pytest.raises(ConfigError, match="train.planned_rounds"):
        RunSettings.from_flat(s.to_flat() | {"train.planned_rounds": 3})


def test_per_modality_training_overrides_are_refused_for_a_paired_site_not_ignored():
    s = run_settings(compose_config("simulate", ["federation.results_dir=/tmp/r", "+training.by_modality.ecg.lr=0.2"]))
    assert s.train_for("ecg").lr == 0.2
    with pytest.raises(ConfigError, match="cannot apply at a paired site"):
        s.train_for_paired()
    assert settings().train_for_paired() == settings().train


@pytest.mark.parametrize("keep", [-0.1, 1.0, float("nan")])
def test_an_alignment_step_that_keeps_everything_or_less_than_nothing_is_refused(keep):
    with pytest.raises(ConfigError, match="keep"):
        AlignConfig(keep=keep)
