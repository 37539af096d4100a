"""Real deployment on loopback: a SuperLink with TLS and SuperNode authentication, three SuperNodes
(2 EEG, 1 ECG), `flwr run` of the unchanged apps; refusals, a site killed mid-run and rejoining,
a coordinator killed mid-run and resumed.

Every process runs in its own session and is killed by process group at the end.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fedxalign.server.credentials import make_credentials
from fedxalign.server.credentials_cli import write_connection
from fedxalign.simulations.flower_run import flower_env
from fedxalign.simulations.processes import descendants, free_port

pytestmark = [pytest.mark.deployment, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SITES = ("eeg_a", "eeg_b", "ecg_a")
RESUME_KEYS = tuple(f"r_{s}" for s in SITES)  # the resume test's own nodes: a key still active cannot register again at once


class Cluster:
    def __init__(self, root: Path, federation: Path) -> None:
        self.root, self.federation = root, federation
        self.creds = root / "creds"
        self.port = free_port()
        self.procs: dict[str, subprocess.Popen] = {}
        self.env = flower_env(root / "flwrhome")  # as the simulation runs Flower: no telemetry, no runtime installs, our bin first

    def spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = (self.root / f"{name}.log").open("w")
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=ROOT, start_new_session=True)
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text()

    def start_superlink(self) -> None:
        c = self.creds
        self.spawn("superlink", [str(BIN / "flower-superlink"), "--ssl-ca-certfile", str(c / "ca/ca.crt"),
                                 "--ssl-certfile", str(c / "superlink/server.crt"), "--ssl-keyfile", str(c / "superlink/server.key"),
                                 "--enable-supernode-auth", "--database", str(self.root / "state.db"), "--host", "127.0.0.1",
                                 "--port", str(self.port), "--disable-runtime-dependency-installation"])
        end = time.time() + 60
        while time.time() < end:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"SuperLink did not open port {self.port}:\n{self.log('superlink')}")

    def start_node(self, site: str, key_site: str | None = None, ca: Path | None = None, data: str | None = None,
                   state: str = "state", **extra: str) -> subprocess.Popen:
        key_site = key_site or site
        node_config = f'data-dir="{self.federation / (data or site)}" state-dir="{self.root / state / site}"'
        args = [str(BIN / "flower-supernode"), "--superlink", f"127.0.0.1:{self.port}",
                "--root-certificates", str(ca or self.creds / "sites" / key_site / "ca.crt"),
                "--auth-supernode-private-key", str(self.creds / "sites" / key_site / "auth_key"),
                "--node-config", node_config, "--port", str(free_port())]
        for k, v in extra.items():
            args += [f"--{k.replace('_', '-')}", v]
        return self.spawn(site, args)

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)

    def close(self) -> None:
        for name in list(self.procs):
            self.kill(name)


@pytest.fixture(scope="module")
def cluster(tiny_federation, tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("deploy"), tiny_federation)
    try:
        make_credentials(c.creds, ["localhost", "127.0.0.1"], [*SITES, *RESUME_KEYS, "intruder"])
        c.start_superlink()
        write_connection(c.root / "flwrhome", "fedxalign", f"127.0.0.1:{c.port}", c.creds / "ca" / "ca.crt")
        reg = subprocess.run([sys.executable, "-m", "fedxalign.server.credentials_cli", "register", "--out", str(c.creds),
                              "--connection", "fedxalign", *sum((["--site", s] for s in (*SITES, *RESUME_KEYS)), [])],
                             env=c.env, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert reg.returncode == 0, reg.stdout + reg.stderr
        yield c
    finally:
        c.close()


def test_tls_is_really_on(cluster):
    with socket.create_connection(("127.0.0.1", cluster.port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        try:
            answer = s.recv(64)
        except ConnectionResetError:
            answer = b""
    assert not answer.startswith(b"HTTP/")  # a plaintext request gets no HTTP answer
    ctx = ssl.create_default_context(cafile=str(cluster.creds / "ca" / "ca.crt"))
    with socket.create_connection(("127.0.0.1", cluster.port), timeout=5) as raw, ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        assert tls.version() in ("TLSv1.2", "TLSv1.3")


def test_unregistered_key_is_refused(cluster):
    proc = cluster.start_node("intruder", data="ecg_b")
    assert proc.wait(timeout=120) != 0
    assert "Failed to activate SuperNode" in cluster.log("intruder")


def test_client_without_the_ca_cannot_connect(cluster, tmp_path):
    make_credentials(tmp_path / "other", ["localhost"], [])
    proc = cluster.start_node("no_ca", key_site="eeg_a", ca=tmp_path / "other" / "ca" / "ca.crt", data="eeg_a",
                              max_retries="1", max_wait_time="10")
    assert proc.wait(timeout=120) != 0
    assert "CERTIFICATE_VERIFY_FAILED" in cluster.log("no_ca")


def wait_for_round(path: Path, n: int, proc: subprocess.Popen, timeout: float) -> list[dict]:
    end = time.time() + timeout
    while time.time() < end:
        if path.is_file():
            try:
                rounds = json.loads(path.read_text())
            except json.JSONDecodeError:
                rounds = []
            if len(rounds) >= n:
                return rounds
        if proc.poll() is not None:
            raise AssertionError(f"flwr run ended early with {proc.returncode}")
        time.sleep(1)
    raise AssertionError(f"round {n} not reached in {timeout} s")


def test_federation_survives_a_killed_site_that_rejoins(cluster):
    for site in SITES:
        cluster.start_node(site)
    results = cluster.root / "results"
    run_config = " ".join([
        f"'federation.federation_dir'='{cluster.federation}'", f"'federation.results_dir'='{results}'",
        f"'federation.cache_dir'='{cluster.root / 'cache'}'", "'federation.rounds'=3",
        "'train.local_epochs'=1", "'federation.min_sites'=2", "'federation.expected_sites'=3", "'federation.join_wait_s'=90.0",
        "'federation.round_timeout_s'=90.0", "'federation.report_train_loss'=false", "'federation.client_threads'=1",
        "'privacy.min_count'=2.0",
    ])
    run = cluster.spawn("flwr_run", [str(BIN / "flwr"), "run", str(ROOT), "fedxalign", "--run-config", run_config, "--stream"])
    wait_for_round(results / "rounds.json", 1, run, 400)
    time.sleep(2)  # round 2 has started: its train messages are out
    cluster.kill("eeg_b")
    wait_for_round(results / "rounds.json", 2, run, 400)
    cluster.start_node("eeg_b")  # same key, same state folder: it rejoins
    assert run.wait(timeout=600) == 0, cluster.log("flwr_run")[-3000:]
    rounds = json.loads((results / "rounds.json").read_text())
    assert [r["n_sites"] for r in rounds] == [3, 2, 3]
    assert rounds[1]["missing"] == ["eeg_b"] and "eeg_b" in rounds[2]["sites"]
    for site, releases in (("eeg_a", 3), ("ecg_a", 3)):
        ledger = json.loads((cluster.root / "state" / site / "ledger.json").read_text())
        assert ledger["counts"]["prototype_release"] == releases
        assert ledger["epsilon_spent"] <= ledger["epsilon_budget"]
    ledger_b = json.loads((cluster.root / "state" / "eeg_b" / "ledger.json").read_text())
    assert ledger_b["counts"]["prototype_release"] >= 2 and ledger_b["epsilon_spent"] <= ledger_b["epsilon_budget"]
    assert (results / "checkpoint.npz").is_file() and (results / "sites.csv").is_file()
    sites_csv = (results / "sites.csv").read_text().splitlines()
    assert len(sites_csv) == 1 + 3 + 2 + 3 and "bytes_sent" in sites_csv[0]


def server_app_pids(superlink: subprocess.Popen) -> list[int]:
    found = []
    for pid in descendants(superlink.pid):
        try:
            if b"serverapp" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            continue
    return found


def test_a_killed_coordinator_resumes_its_run(cluster):
    """Kill the ServerApp process (by PID) after round 1, then `flwr run` again with federation.resume=true: all rounds
    finish, each once in the logs, and each site's ledger goes on from what it had spent (a re-sent round is replayed)."""
    for site in SITES:  # fresh nodes and site state, so the ledgers are this run's alone; the SuperLink still lists
        cluster.kill(site)  # the killed nodes for a while, and the run must go on with the ones that answer
        cluster.start_node(site, key_site=f"r_{site}", state="state_resume")
    results = cluster.root / "results_resume"
    settings = [
        f"'federation.federation_dir'='{cluster.federation}'", f"'federation.results_dir'='{results}'",
        f"'federation.cache_dir'='{cluster.root / 'cache'}'", "'federation.rounds'=3", "'train.local_epochs'=1",
        "'federation.min_sites'=3", "'federation.expected_sites'=3", "'federation.join_wait_s'=90.0",
        "'federation.round_timeout_s'=90.0", "'federation.client_threads'=1", "'privacy.min_count'=2.0",
    ]
    first = cluster.spawn("flwr_run_1", [str(BIN / "flwr"), "run", str(ROOT), "fedxalign", "--run-config", " ".join(settings), "--stream"])
    wait_for_round(results / "rounds.json", 1, first, 400)
    end = time.time() + 60
    while not (results / "checkpoint.npz").is_file() and time.time() < end:  # written last in a round
        time.sleep(0.2)
    apps = server_app_pids(cluster.procs["superlink"])
    assert apps, "no ServerApp process under the SuperLink"
    for pid in apps:
        os.kill(pid, signal.SIGKILL)
    cluster.kill("flwr_run_1")
    stopped_at = json.loads((results / "rounds.json").read_text())
    assert len(stopped_at) < 3
    spent = {s: json.loads((cluster.root / "state_resume" / s / "ledger.json").read_text())["epsilon_spent"] for s in SITES}
    again = cluster.spawn("flwr_run_2", [str(BIN / "flwr"), "run", str(ROOT), "fedxalign", "--run-config",
                                         " ".join([*settings, "'federation.resume'=true"]), "--stream"])
    assert again.wait(timeout=600) == 0, cluster.log("flwr_run_2")[-3000:]
    rounds = json.loads((results / "rounds.json").read_text())
    assert [r["round"] for r in rounds] == [1, 2, 3]
    rows = (results / "sites.csv").read_text().splitlines()[1:]
    assert len(rows) == 3 * len(SITES)  # each site once per round, the re-run round included once
    for site in SITES:
        ledger = json.loads((cluster.root / "state_resume" / site / "ledger.json").read_text())
        assert spent[site] <= ledger["epsilon_spent"] <= ledger["epsilon_budget"]
        assert ledger["counts"]["prototype_release"] == 3  # a round asked twice is released once
