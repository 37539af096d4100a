"""A simulated federation through Flower's current path: `flwr run` against a local simulation SuperLink.

Every setting reaches the ServerApp and the ClientApps in the flat run config, and each simulated
site is found from its `partition-id`, exactly as a deployed run reads them: only the engine differs.
The SuperLink is this run's own (its port, its FLWR_HOME under the results folder), started here
and stopped here by PID, so nothing outlives the run and two runs never share one.
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from fedxalign.shared.runconfig import RunSettings
from fedxalign.simulations.flwr_config import config_lines
from fedxalign.simulations.processes import free_port, stop_tree

CONNECTION = "fedxalign-sim"
READY_S = 60.0
APP_TOML = """[project]
name = "fedxalign-sim"
version = "0.1.0"
description = "FedXAlign, simulated: the installed fedxalign package's ServerApp and ClientApp with this run's settings"
license = "Apache-2.0"
dependencies = []

[tool.flwr.app]
publisher = "fedxalign"

[tool.flwr.app.components]
serverapp = "fedxalign.server.server_app:app"
clientapp = "fedxalign.client.client_app:app"

[tool.flwr.app.config]
"""


def _bin(name: str) -> str:
    """Flower's command beside this interpreter (a venv), else on PATH."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.is_file() else shutil.which(name)
    if found is None:
        raise RuntimeError(f"Flower's '{name}' command is neither beside {sys.executable} nor on PATH: install fedxalign[sim]")
    return found


def flat_config(settings: RunSettings) -> dict:
    """The run config with absolute paths: Flower's processes do not run in this working directory."""
    flat = settings.to_flat()
    for key in ("federation.federation_dir", "federation.results_dir", "federation.cache_dir"):
        flat[key] = str(Path(flat[key]).resolve())
    for key, value in list(flat.items()):
        if key.endswith(".pretrained") and value:
            flat[key] = str(Path(value).resolve())
    return flat


def write_app(app_dir: Path, settings: RunSettings) -> Path:
    """A Flower app folder holding only pyproject.toml: its components come from the installed package."""
    app_dir.mkdir(parents=True, exist_ok=True)
    (app_dir / "pyproject.toml").write_text(APP_TOML + config_lines(flat_config(settings)))
    return app_dir


def flower_env(home: Path) -> dict[str, str]:
    return os.environ | {
        "FLWR_HOME": str(home), "FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1",
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",  # never let the SuperLink pip-install into a run
        "RAY_DEDUP_LOGS": "1", "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",
        # Ray starts its workers (the ClientApps) at nice 15, below the references' nice 10 (references.py): the
        # federation then yielded its cores to the references, the opposite of what they are niced for
        "RAY_worker_niceness": "0",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # the SuperLink spawns flower-superexec
    }


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=0.5) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


@contextmanager
def local_superlink(home: Path) -> Iterator[str]:
    """A simulation SuperLink on a free loopback port (plain HTTP: nothing leaves this machine), stopped on exit."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = home / "superlink.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen([_bin("flower-superlink"), "--insecure", "--simulation", "--isolation", "subprocess",
                                 "--host", "127.0.0.1", "--port", str(port), "--database", str(home / "state.db"),
                                 "--disable-runtime-dependency-installation"],
                                stdout=log, stderr=subprocess.STDOUT, env=flower_env(home), start_new_session=True)
        try:
            deadline = time.monotonic() + READY_S
            while not _healthy(port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the local simulation SuperLink did not start (exit {proc.poll()}); see {log_path}")
                time.sleep(0.2)
            (home / "config.toml").write_text(f'[superlink.{CONNECTION}]\naddress = "127.0.0.1:{port}"\ninsecure = true\n')
            yield f"127.0.0.1:{port}"
        finally:
            stop_tree(proc)


def run_federation_simulation(settings: RunSettings, n_nodes: int, cpus_per_client: float, home: Path) -> None:
    """`flwr run` of this run's app with `n_nodes` simulated SuperNodes; the stream's round lines and errors are printed,
    all of it goes to `home/run.log`. Raises when the run ended without the checkpoint its last round writes."""
    app = write_app(home / "app", settings)
    federation = (f"num-supernodes={n_nodes} client-resources-num-cpus={cpus_per_client:g} client-resources-num-gpus=0 "
                  "init-args-logging-level=\"ERROR\" init-args-log-to-driver=false")
    tail: collections.deque[str] = collections.deque(maxlen=40)
    with local_superlink(home), (home / "run.log").open("w") as log:
        proc = subprocess.Popen([_bin("flwr"), "run", str(app), CONNECTION, "--stream", "--federation-config", federation],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=flower_env(home),
                                start_new_session=True)
        try:
            for line in proc.stdout:
                log.write(line)
                tail.append(line.rstrip())
                if _worth_showing(line):
                    print(line.rstrip(), flush=True)
            code = proc.wait()
        finally:
            if proc.poll() is None:
                stop_tree(proc)
    done = Path(settings.federation.results_dir) / "checkpoint.npz"
    if code != 0 or not done.is_file():
        raise RuntimeError(f"the simulated federation ended without its checkpoint (flwr run exit {code}); "
                           f"full log {home / 'run.log'}; last lines:\n" + "\n".join(tail))


def _worth_showing(line: str) -> bool:
    """The run's own lines and anything that went wrong; not Flower's start-up and Ray's actor chatter."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", line).strip()  # Flower colours its level names
    if not text or text == "INFO :":
        return False
    chatter = ("Flower App configuration warnings", "Using SuperLink", "Successfully started run", "Starting logstream",
               "Starting Flower Simulation", "Federation `", "To change federation size", "flwr federation simulation-config",
               "Successfully installed", "Since flwr 1.32", "Manually terminating ClientAppActor")
    return not any(c in text for c in chatter)
