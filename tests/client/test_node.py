import pytest

from fedxalign.client.node import resolve_node
from fedxalign.shared.errors import ConfigError
from fedxalign.simulations.settings import run_settings
from tests.conftest import compose_config


@pytest.fixture
def settings(tiny_federation, tmp_path):
    return run_settings(compose_config("simulate", [f"federation.results_dir={tmp_path}",
                                                    f"federation.federation_dir={tiny_federation}"]))


def test_deployment_node_config(settings, tiny_federation, tmp_path):
    node = resolve_node({"data-dir": str(tiny_federation / "ecg_a"), "state-dir": str(tmp_path / "st"), "privacy-epsilon": 3.0}, settings)
    assert node.site.name == "ecg_a" and node.policy.epsilon == 3.0 and node.state_dir == tmp_path / "st"
    assert node.policy.share_weights and node.policy.dp_required and not node.policy.share_metrics  # strict defaults
    refuse = resolve_node({"data-dir": str(tiny_federation / "ecg_a"), "state-dir": str(tmp_path / "st"), "share-weights": False}, settings)
    assert not refuse.policy.share_weights


def test_policy_file_beside_the_data_and_node_keys_over_it(settings, tiny_federation, tmp_path):
    import shutil

    site = tmp_path / "ecg_a"
    shutil.copytree(tiny_federation / "ecg_a", site)
    (site / "policy.yaml").write_text("epsilon: 2.0\nunit: subject\nshare_metrics: true\n")
    node = resolve_node({"data-dir": str(site), "state-dir": str(tmp_path / "st")}, settings)
    assert (node.policy.epsilon, node.policy.unit, node.policy.share_metrics) == (2.0, "subject", True)
    node = resolve_node({"data-dir": str(site), "state-dir": str(tmp_path / "st"), "share-metrics": "false"}, settings)
    assert not node.policy.share_metrics
    with pytest.raises(ConfigError, match="policy-file"):
        resolve_node({"data-dir": str(site), "state-dir": str(tmp_path / "st"), "policy-file": str(tmp_path / "none.yaml")}, settings)


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


def test_only_a_simulated_node_takes_the_runs_policy_and_a_deployed_one_keeps_its_own(tiny_federation, tmp_path):
    """The researcher owns simulated sites; the run config (the coordinator's) never widens a deployed site's policy."""
    greedy = run_settings(compose_config("simulate", [f"federation.results_dir={tmp_path}", f"federation.federation_dir={tiny_federation}",
                                                       "privacy.epsilon=50", "federation.rounds=60"]))
    simulated = resolve_node({"partition-id": 0, "num-partitions": 4}, greedy).policy
    assert (simulated.epsilon, simulated.max_rounds, simulated.share_metrics) == (50.0, 60, True)
    deployed = resolve_node({"data-dir": str(tiny_federation / "ecg_a"), "state-dir": str(tmp_path / "st")}, greedy).policy
    assert deployed.epsilon < 50 and deployed.max_rounds < 60 and not deployed.share_metrics
    # a node the coordinator could reach as a simulated one only if its own node_config said so: data-dir wins
    both = resolve_node({"data-dir": str(tiny_federation / "ecg_a"), "state-dir": str(tmp_path / "st"), "partition-id": 0}, greedy)
    assert both.policy == deployed
