import pytest

from client.node import resolve_node
from shared.errors import ConfigError
from simulations.settings import run_settings
from tests.conftest import compose_config


@pytest.fixture
def settings(tiny_federation, tmp_path):
    return run_settings(compose_config("simulate", [f"federation_run.results_dir={tmp_path}",
                                                    f"federation_run.federation_dir={tiny_federation}"]))


def test_deployment_node_config(settings, tiny_federation, tmp_path):
    node = resolve_node({"data-dir": str(tiny_federation / "ecg_a"), "state-dir": str(tmp_path / "st"), "privacy-epsilon": 3.0}, settings)
    assert node.site.name == "ecg_a" and node.privacy.epsilon == 3.0 and node.state_dir == tmp_path / "st"
    assert node.allow_weights
    refuse = resolve_node({"data-dir": str(tiny_federation / "ecg_a"), "state-dir": str(tmp_path / "st"), "share-weights": False}, settings)
    assert not refuse.allow_weights


def test_simulation_partition(settings, tmp_path):
    node = resolve_node({"partition-id": 0, "num-partitions": 4}, settings)
    assert node.site.name == "ecg_a" and node.state_dir == tmp_path / "state" / "ecg_a"
    with pytest.raises(ConfigError, match="partition-id 9"):
        resolve_node({"partition-id": 9}, settings)


def test_bad_node_config(settings, tiny_federation):
    with pytest.raises(ConfigError, match="state-dir"):
        resolve_node({"data-dir": str(tiny_federation / "ecg_a")}, settings)
    with pytest.raises(ConfigError, match="unknown node_config"):
        resolve_node({"data_dir": "x"}, settings)
