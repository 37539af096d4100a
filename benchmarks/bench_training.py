"""Local training throughput with and without DP-SGD for the default encoder, peak memory, and epsilon.

Each mode runs in its own process so its peak RSS is its own. Usage:
    python benchmarks/bench_training.py [--steps 40] [--batch 64] [--channels 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from client.training import TrainConfig, dp_train  # noqa: E402
from shared.data.site import WindowDataset  # noqa: E402
from shared.models.encoder import EncoderConfig, build_encoder  # noqa: E402
from shared.privacy.config import PrivacyConfig  # noqa: E402
from shared.privacy.ledger import PrivacyLedger  # noqa: E402


def load_yaml(name: str) -> dict:
    return yaml.safe_load((ROOT / "configs" / name).read_text())


def one_mode(dp: bool, steps: int, batch: int, channels: int) -> dict:
    torch.set_num_threads(2)
    warnings.simplefilter("ignore")
    n = steps * batch
    rng = np.random.default_rng(0)
    ds = WindowDataset(rng.standard_normal((n, channels, 3000)).astype(np.float32), rng.integers(0, 5, n), 30, 100)
    anchors = torch.nn.functional.normalize(torch.randn(5, 32), dim=-1)
    model = build_encoder(EncoderConfig(**load_yaml("model/default.yaml")), seed=0)
    privacy = PrivacyConfig(**(load_yaml("privacy/default.yaml") | {"enabled": dp, "epsilon": 1e4}))
    train_cfg = TrainConfig.from_mapping(load_yaml("training/default.yaml") | {"local_epochs": 1, "batch_size": batch, "planned_rounds": 1})
    with tempfile.TemporaryDirectory() as tmp:
        ledger = PrivacyLedger(Path(tmp) / "l.json", privacy)
        t = time.perf_counter()
        report = dp_train(model, ds, anchors, torch.ones(5, dtype=torch.bool), train_cfg, privacy, ledger)
        dt = time.perf_counter() - t
    return {"dp": dp, "windows_per_s": report.steps * batch / dt, "steps": report.steps,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def default_run_epsilon(site_windows: int) -> tuple[float, float, int]:
    """Epsilon after one round and after all planned rounds of the default settings, for a site of `site_windows` train windows."""
    from shared.privacy.ledger import calibrate_noise
    from shared.privacy.release import effective_release_sigma
    from shared.privacy.sampling import poisson_rate

    privacy = PrivacyConfig(**load_yaml("privacy/default.yaml"))
    train = load_yaml("training/default.yaml")
    rounds = int(load_yaml("simulate.yaml")["federation_rounds"])
    q = poisson_rate(site_windows, train["batch_size"])  # what Opacus' Poisson loader samples at
    steps = round(1 / q) * train["local_epochs"]
    with tempfile.TemporaryDirectory() as tmp:
        ledger = PrivacyLedger(Path(tmp) / "l.json", privacy)
        sigma = calibrate_noise(ledger, q, steps, rounds, effective_release_sigma(privacy.proto_noise_multiplier))
        rel = (effective_release_sigma(privacy.proto_noise_multiplier), 1.0, 1)
        one = ledger.epsilon([(sigma, q, steps), rel])
        full = ledger.epsilon([(sigma, q, steps * rounds), (rel[0], 1.0, rounds)])
    return one, full, rounds, sigma


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--channels", type=int, default=2)
    p.add_argument("--site-windows", type=int, default=400)
    p.add_argument("--mode", choices=["dp", "plain"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.mode:
        print(json.dumps(one_mode(args.mode == "dp", args.steps, args.batch, args.channels)))
        return
    results = {}
    for mode in ("plain", "dp"):
        out = subprocess.run([sys.executable, __file__, "--mode", mode, "--steps", str(args.steps), "--batch", str(args.batch),
                              "--channels", str(args.channels)], capture_output=True, text=True, check=True)
        results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
        r = results[mode]
        print(f"{mode:6s} {r['windows_per_s']:8.1f} windows/s  ({r['steps']} steps of batch {args.batch}, {args.channels} ch)  peak RSS {r['peak_rss_mb']:.0f} MB")
    print(f"DP-SGD slowdown: {results['plain']['windows_per_s'] / results['dp']['windows_per_s']:.2f}x (target <= 2x)")
    one, full, rounds, sigma = default_run_epsilon(args.site_windows)
    print(f"default settings, site of {args.site_windows} train windows: noise multiplier {sigma:.2f}, "
          f"epsilon {one:.2f} after 1 round, {full:.2f} after {rounds} planned rounds (budget {PrivacyConfig(**load_yaml('privacy/default.yaml')).epsilon:g})")


if __name__ == "__main__":
    main()
