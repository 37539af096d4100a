"""Where a deployed site's message time goes: each Flower message starts a fresh ClientApp process.

For one site of the default federation, each phase of a train message and of an evaluate
message is timed in a fresh process, as a SuperNode runs them: interpreter start and imports,
settings from the flat run config, the site's windows (from the cache after the first
message), the DP round, the evaluation. The same round in one process with the windows already
in memory is what a simulated round costs the site. Usage:
    python benchmarks/bench_clientapp.py [--site eeg_sleepedf] [--federation data/generated/default]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from fedxalign.client.client_app import app  # what flwr-clientapp imports for every message
t_import = time.perf_counter()
import torch
from fedxalign.client.node import load_node_data, resolve_node
from fedxalign.client.site_round import train_round
from fedxalign.shared.protocol import GlobalState
from fedxalign.shared.runconfig import RunSettings

flat, site_dir, state, cache, phase, rnd = json.loads(sys.argv[1])
s = RunSettings.from_flat(flat | {"federation.cache_dir": cache})
torch.set_num_threads(s.federation.client_threads)
node = resolve_node({"data-dir": site_dir, "state-dir": state}, s)
t_setup = time.perf_counter()
data = load_node_data(node, s)
t_load = time.perf_counter()
m = node.site.modality
out = {"import_s": t_import - t0, "settings_s": t_setup - t_import, "load_s": t_load - t_setup, "modules": len(sys.modules)}
if phase == "train":
    train_round(data, node.state_dir, s.model_for(m), s.train_for(m), s.privacy, GlobalState(), round_no=rnd, anchor_key=m)
    out["work_s"] = time.perf_counter() - t_load
else:
    from fedxalign.client.evaluation import evaluate_site
    evaluate_site(data, node.state_dir, s.model_for(m), anchor_key=m)
    out["work_s"] = time.perf_counter() - t_load
for name in ("hydra", "ray", "matplotlib", "neurodsp", "sklearn", "pandas", "wfdb", "opacus"):
    out["has_" + name] = name in sys.modules
print(json.dumps(out))
"""


def flat_settings() -> dict:
    from hydra import compose, initialize_config_dir

    from fedxalign.configs import CONFIG_DIR
    from fedxalign.simulations.settings import run_settings

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        return run_settings(compose("simulate", overrides=["federation.results_dir=unused"])).to_flat()


def message(args: list, cwd: Path) -> dict:
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(args)], capture_output=True, text=True, cwd=cwd, check=True)
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out["process_s"] = time.perf_counter() - t
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--site", default="eeg_sleepedf")
    p.add_argument("--federation", type=Path, default=Path("data/generated/default"))
    a = p.parse_args()
    site_dir = (a.federation / a.site).resolve()
    if not site_dir.is_dir():
        sys.exit(f"{site_dir} not found: run `make run` (or fedxalign-generate) first")
    flat = flat_settings()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = [flat, str(site_dir), str(tmp / "state"), str(tmp / "cache")]
        rows = {"train (cold cache)": message([*base, "train", 1], tmp)}  # the first message fills the window cache
        for rnd in (2, 3):
            rows[f"train round {rnd}"] = message([*base, "train", rnd], tmp)
        rows["evaluate"] = message([*base, "evaluate", 3], tmp)
    print(f"site {a.site}: one message = one fresh process (seconds)")
    print(f"{'message':26s} {'process':>8s} {'imports':>8s} {'settings':>8s} {'windows':>8s} {'work':>8s}  modules")
    for name, r in rows.items():
        print(f"{name:26s} {r['process_s']:8.2f} {r['import_s']:8.2f} {r['settings_s']:8.2f} {r['load_s']:8.2f} {r['work_s']:8.2f}  {r['modules']}")
    warm, ev = rows["train round 3"], rows["evaluate"]
    print(f"site's share of a simulated round (the round's work, windows in memory): {warm['work_s']:.2f} s")
    print(f"site's share of a deployed round (one fresh process, before Flower's polling): {warm['process_s']:.2f} s "
          f"= {warm['process_s'] / warm['work_s']:.1f}x; with share_metrics the evaluate message adds {ev['process_s']:.2f} s")
    print("loaded on the train message's path: " + ", ".join(k[4:] for k, v in warm.items() if k.startswith("has_") and v)
          + "; not loaded: " + ", ".join(k[4:] for k, v in warm.items() if k.startswith("has_") and not v))

if __name__ == "__main__":
    main()
