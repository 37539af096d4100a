"""The simulation's Flower path: the app folder `flwr run` gets, and a local SuperLink that leaves nothing behind."""

import subprocess
import sys
import tomllib
from pathlib import Path

from fedxalign.shared.runconfig import RunSettings
from fedxalign.simulations.flower_run import _worth_showing, flat_config, flower_env, local_superlink, write_app
from fedxalign.simulations.processes import descendants
from fedxalign.simulations.settings import run_settings
from tests.conftest import compose_config


def test_the_app_carries_every_setting_with_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = run_settings(compose_config("simulate", ["federation.results_dir=out", "federation.federation_dir=fed",
                                                        "model.pretrained='ckpt/{modality}.pt'", "privacy.epsilon=3"]))
    app = write_app(tmp_path / "app", settings)
    doc = tomllib.loads((app / "pyproject.toml").read_text())
    assert doc["tool"]["flwr"]["app"]["components"] == {"serverapp": "fedxalign.server.server_app:app",
                                                        "clientapp": "fedxalign.client.client_app:app"}
    config = doc["tool"]["flwr"]["app"]["config"]
    assert config == flat_config(settings)
    assert config["federation.results_dir"] == str(tmp_path / "out") and config["model.pretrained"] == str(tmp_path / "ckpt/{modality}.pt")
    back = RunSettings.from_flat(config)
    assert back.to_flat() == config and back.privacy.epsilon == 3.0  # nothing lost on the way to the apps


def test_the_local_superlink_answers_and_is_gone_with_all_its_processes_after_the_run(tmp_path):
    with local_superlink(tmp_path / "home") as address:
        config = (tmp_path / "home" / "config.toml").read_text()
        assert f'address = "{address}"' in config and "insecure = true" in config
        pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and b"flower-superlink" in _cmdline(p)
                and f"--port\0{address.rsplit(':', 1)[1]}".encode() in _cmdline(p)]
        assert len(pids) == 1
        below = descendants(pids[0])
        assert address.startswith("127.0.0.1:")  # loopback only: the link is plain HTTP
    for pid in [pids[0], *below]:
        assert not Path(f"/proc/{pid}").exists() or b"Z" == (Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0])


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""


def test_the_console_shows_round_lines_and_errors_not_start_up_chatter():
    assert _worth_showing("round 1/6 | 7 sites | alignment +0.049 -> +0.634 | 35.8 s\n")
    assert _worth_showing("Traceback (most recent call last):\n")
    assert _worth_showing("\x1b[91mERROR \x1b[0m:     ServerApp raised an exception\n")
    assert not _worth_showing("\x1b[92mINFO \x1b[0m:      Starting Flower Simulation\n")
    assert not _worth_showing("\x1b[92mINFO \x1b[0m:      \n")


RAY_WORKER_NICENESS = """
import ray
ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
@ray.remote
def niceness():
    import os
    return os.nice(0)
print(ray.get(niceness.remote()))
ray.shutdown()
"""


def test_ray_workers_started_with_the_flower_environment_keep_the_federations_priority(tmp_path):
    """Ray's default is nice 15, below the references' nice 10: the federation would yield its cores to them."""
    out = subprocess.run([sys.executable, "-c", RAY_WORKER_NICENESS], env=flower_env(tmp_path / "home"), capture_output=True,
                         text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "0"
