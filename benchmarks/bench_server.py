"""Coordinator cost per round (aggregation + alignment) for 10/100/1000 prototype messages, and
Flower-simulation wall time per round for 4 and 16 generated sites.

Usage: python benchmarks/bench_server.py [--skip-sim] [--sim-sites 4 16]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fedxalign.server.strategy import ServerState, SiteResult, aggregate_round  # noqa: E402
from fedxalign.shared.data.config import DataConfig, PreprocessConfig  # noqa: E402
from fedxalign.shared.data.synthetic.federation import FederationSpec, generate_federation  # noqa: E402
from fedxalign.shared.models.encoder import EncoderConfig  # noqa: E402
from fedxalign.shared.privacy.config import PrivacyConfig  # noqa: E402
from fedxalign.shared.runconfig import AlignConfig, FederationConfig, RunSettings  # noqa: E402
from fedxalign.shared.train_config import TrainConfig  # noqa: E402


def server_round_cost(n_messages: int, repeats: int = 3) -> float:
    rng = np.random.default_rng(0)
    settings = RunSettings(FederationConfig(), AlignConfig(), DataConfig(("W", "N1", "N2", "N3", "REM"),
                           {"eeg": PreprocessConfig(), "ecg": PreprocessConfig()}), EncoderConfig(), TrainConfig(), PrivacyConfig())
    results = [SiteResult(f"s{i}", "eeg" if i % 2 else "ecg",
                          {"prototypes": rng.standard_normal((5, 32)).astype(np.float32), "counts": rng.uniform(10, 100, 5).astype(np.float32)},
                          {"epsilon": 1.0}) for i in range(n_messages)]
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        aggregate_round(ServerState(), results, settings)
        times.append(time.perf_counter() - t)
    return min(times)


def sim_wall_per_round(n_sites: int, rounds: int = 3) -> list[float]:
    tmp = Path(tempfile.mkdtemp(prefix="fedxalign-simbench-"))
    half = n_sites // 2
    sites = [{"name": f"eeg_{i:02d}", "modality": "eeg", "format": "edf", "sfreq": 100, "channels": ["Fpz-Cz", "Pz-Oz"],
              "n_subjects": 4, "hours_per_record": 0.25} for i in range(half)]
    sites += [{"name": f"ecg_{i:02d}", "modality": "ecg", "format": "wfdb", "sfreq": 250, "channels": ["ECG"],
               "n_subjects": 4, "hours_per_record": 0.25} for i in range(n_sites - half)]
    generate_federation(FederationSpec.from_mapping({"seed": 0, "sites": sites}), tmp / "fed", progress=False)
    out = tmp / "results"
    cmd = [sys.executable, "-m", "fedxalign.simulations.run", f"federation.federation_dir={tmp / 'fed'}", f"federation.results_dir={out}",
           f"paths.cache_dir={tmp / 'cache'}", f"federation.rounds={rounds}", "baselines=[]", "plots=false", f"hydra.run.dir={tmp / 'hydra'}"]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True)
    return [r["wall_s"] for r in json.loads((out / "rounds.json").read_text())]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--skip-sim", action="store_true")
    p.add_argument("--sim-sites", type=int, nargs="*", default=[4, 16])
    args = p.parse_args()
    for n in (10, 100, 1000):
        print(f"server round (aggregate + align) with {n:5d} prototype messages: {1000 * server_round_cost(n):8.1f} ms")
    if not args.skip_sim:
        for n in args.sim_sites:
            walls = sim_wall_per_round(n)
            print(f"Flower simulation, {n:2d} sites: wall per round {', '.join(f'{w:.1f}' for w in walls)} s "
                  f"(first round includes actor start-up); steady state {np.mean(walls[1:]):.1f} s/round")


if __name__ == "__main__":
    main()
