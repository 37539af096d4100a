"""Local training throughput with and without DP-SGD for an encoder preset, peak memory, and epsilon.

Each mode runs in its own process so its peak RSS is its own. The settings are the composed
Hydra config (`model=<preset>`), as a run uses them. Usage:
    python benchmarks/bench_training.py [--preset small|cbramod] [--device auto|cpu|cuda] [--steps 40] [--batch 128] [--channels 2]
On a GPU (issue 12's check): --preset cbramod --batch 256 --channels 4 --device cuda.
"""

from __future__ import annotations

import argparse
import dataclasses
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fedxalign.client.training import dp_train  # noqa: E402
from fedxalign.shared.data.site import WindowDataset  # noqa: E402
from fedxalign.shared.device import pick_device  # noqa: E402
from fedxalign.shared.models.encoder import build_encoder  # noqa: E402
from fedxalign.shared.privacy.ledger import PrivacyLedger  # noqa: E402


def composed(preset: str):
    from hydra import compose, initialize_config_dir

    from fedxalign.configs import CONFIG_DIR
    from fedxalign.simulations.settings import run_settings

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        return run_settings(compose("simulate", overrides=[f"model={preset}", "federation.results_dir=unused"]))


def one_mode(dp: bool, steps: int, batch: int, channels: int, preset: str, device: str) -> dict:
    torch.set_num_threads(2)
    warnings.simplefilter("ignore")
    settings = composed(preset)
    model_cfg = settings.model_for("eeg")
    n = steps * batch
    rng = np.random.default_rng(0)
    patches = settings.data.preprocess["eeg"].n_patches
    ds = WindowDataset(rng.standard_normal((n, channels, patches * model_cfg.patch_samples)).astype(np.float32),
                       rng.integers(0, 5, n), patches, model_cfg.patch_samples)
    anchors = torch.nn.functional.normalize(torch.randn(5, model_cfg.embed_dim), dim=-1)
    model = build_encoder(model_cfg, seed=0)
    privacy = dataclasses.replace(settings.privacy, enabled=dp, epsilon=1e4)
    train_cfg = dataclasses.replace(settings.train_for("eeg"), local_epochs=1, batch_size=batch, planned_rounds=1, device=device)
    with tempfile.TemporaryDirectory() as tmp:
        ledger = PrivacyLedger(Path(tmp) / "l.json", privacy)
        t = time.perf_counter()
        report = dp_train(model, ds, anchors, torch.ones(5, dtype=torch.bool), train_cfg, privacy, ledger)
        dt = time.perf_counter() - t
    gpu = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0
    return {"dp": dp, "windows_per_s": report.steps * batch / dt, "steps": report.steps, "params": sum(p.numel() for p in model.parameters()),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "peak_gpu_gib": gpu,
            "device": str(pick_device(device))}


def default_run_epsilon(site_windows: int) -> tuple[float, float, int, float, tuple[float, float]]:
    """Epsilon after one round and after all planned rounds of the default settings, for a site of `site_windows` train windows;
    the noise multiplier, and the calibration's seconds against a search on all RDP orders from the start (its old form)."""
    from fedxalign.shared.privacy.ledger import _smallest_fitting, calibrate_noise
    from fedxalign.shared.privacy.release import effective_release_sigma
    from fedxalign.shared.privacy.sampling import poisson_rate

    settings = composed("small")
    privacy = settings.privacy
    rounds = settings.federation.rounds
    q = poisson_rate(site_windows, settings.train.batch_size)  # what Opacus' Poisson loader samples at
    steps = round(1 / q) * settings.train.local_epochs
    with tempfile.TemporaryDirectory() as tmp:
        ledger = PrivacyLedger(Path(tmp) / "l.json", privacy)
        t = time.perf_counter()
        sigma = calibrate_noise(ledger, q, steps, rounds, effective_release_sigma(privacy.proto_noise_multiplier))
        t_now = time.perf_counter() - t
        rel = (effective_release_sigma(privacy.proto_noise_multiplier), 1.0, 1)
        one = ledger.epsilon([(sigma, q, steps), rel])
        full = ledger.epsilon([(sigma, q, steps * rounds), (rel[0], 1.0, rounds)])
        fresh = PrivacyLedger(Path(tmp) / "all_orders.json", privacy)
        t = time.perf_counter()
        _smallest_fitting(lambda s: fresh.can_afford([(s, q, steps * rounds), (rel[0], 1.0, rounds)]), 0.3, 200.0)
        t_all = time.perf_counter() - t
    return one, full, rounds, sigma, (t_now, t_all)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--channels", type=int, default=2)
    p.add_argument("--site-windows", type=int, default=400)
    p.add_argument("--preset", default="small", choices=["small", "cbramod"])
    p.add_argument("--device", default="auto")
    p.add_argument("--mode", choices=["dp", "plain"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.mode:
        print(json.dumps(one_mode(args.mode == "dp", args.steps, args.batch, args.channels, args.preset, args.device)))
        return
    results = {}
    for mode in ("plain", "dp"):
        out = subprocess.run([sys.executable, __file__, "--mode", mode, "--steps", str(args.steps), "--batch", str(args.batch),
                              "--channels", str(args.channels), "--preset", args.preset, "--device", args.device],
                             capture_output=True, text=True, check=True)
        results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
        r = results[mode]
        print(f"{args.preset} on {r['device']}, {mode:5s} {r['windows_per_s']:8.1f} windows/s  ({r['steps']} steps of batch {args.batch}, "
              f"{args.channels} ch, {r['params']} parameters)  peak RSS {r['peak_rss_mb']:.0f} MB, GPU {r['peak_gpu_gib']:.1f} GiB")
    ratio = results["dp"]["windows_per_s"] / results["plain"]["windows_per_s"]
    print(f"DP-SGD throughput {ratio:.2f} of non-private (issue 12's GPU target: >= 0.6 with the cbramod preset)")
    one, full, rounds, sigma, (t_now, t_all) = default_run_epsilon(args.site_windows)
    print(f"default settings, site of {args.site_windows} train windows: noise multiplier {sigma:.2f}, "
          f"epsilon {one:.2f} after 1 round, {full:.2f} after {rounds} planned rounds (budget {composed('small').privacy.epsilon:g})")
    print(f"noise calibration {t_now:.2f} s (integer RDP orders first, then all); searching all orders from the start {t_all:.2f} s")


if __name__ == "__main__":
    main()
