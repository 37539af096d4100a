import pytest

from shared.errors import ConfigError
from shared.runconfig import RunSettings
from simulations.settings import run_settings
from tests.conftest import compose_config


def settings():
    return run_settings(compose_config("simulate", ["federation_run.results_dir=/tmp/r"]))


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
    s = run_settings(compose_config("simulate", ["federation_run.results_dir=/tmp/r", "privacy.epsilon=3", "federation_rounds=2",
                                                 "alignment.enabled=false"]))
    assert s.privacy.epsilon == 3 and s.federation.rounds == 2 and s.train.planned_rounds == 2 and not s.align.enabled


def test_pyproject_flower_config_matches_the_hydra_defaults():
    """`flwr run` reads [tool.flwr.app.config]; it must say what the Hydra defaults say."""
    import tomllib
    from pathlib import Path

    flat = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    expected = run_settings(compose_config("simulate", ["federation_run.results_dir=results/flwr-run"]))
    assert RunSettings.from_flat(flat) == expected


def test_infinite_epsilon_means_no_dp():
    s = run_settings(compose_config("simulate", ["federation_run.results_dir=/tmp/r", "privacy.epsilon=inf"]))
    assert not s.privacy.enabled
