"""Issue 9's fusion targets on several generated federations, each run repeated: prints each run and the mean.

    python benchmarks/bench_fusion.py [--seeds 0 1 2] [--repeats 1] [--out results/fusion] [--reuse] [-- overrides]

Each run is FedXAlign alone (`baselines=[]`, epsilon 8 unless overridden) on the default
federation spec generated with that seed; its fusion table is scored on the paired site's
held-out subjects (two of eight, about 70 pairs), so one run's figures move by several
hundredths, and the mean over seeds and repeats is the figure to read. About 2-3 minutes per
run on 2 cores. `--reuse` keeps runs whose summary.json exists.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TARGETS = [  # (summary key, column label, target)
    ("fusion_both_minus_best_single", "both-best", "> 0"),
    ("masked_kept_eeg_only", "kept EEG", ">= 0.95"),
    ("masked_kept_ecg_only", "kept ECG", ">= 0.95"),
    ("masked_minus_zero_eeg_only", "mask-zero EEG", "> 0"),
    ("masked_minus_zero_ecg_only", "mask-zero ECG", "> 0"),
]


def run_dir(out: Path, seed: int, repeat: int) -> Path:
    return out / (f"seed{seed}" if repeat == 0 else f"seed{seed}_r{repeat}")


def run(seed: int, folder: Path, extra: list[str]) -> dict:
    if not (folder / "summary.json").is_file():
        name = "default" if seed == 0 else f"default_seed{seed}"
        cmd = [sys.executable, "-m", "fedxalign.simulations.run", f"synthetic.seed={seed}", f"synthetic.name={name}",
               "privacy.epsilon=8", "plots=false", "baselines=[]", f"hydra.run.dir={folder}", *extra]
        print("$", " ".join(cmd[1:]), flush=True)
        subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    summary = json.loads((folder / "summary.json").read_text())
    if not summary.get("fusion"):
        raise SystemExit(f"{folder}: the run has no fusion table (no paired site, or fusion.enabled=false)")
    return summary["fusion"]["targets"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "fusion")
    ap.add_argument("--reuse", action="store_true", help="keep runs that already have a summary.json")
    ap.add_argument("extra", nargs="*", help="more Hydra overrides for every run")
    args = ap.parse_args()
    rows = {}
    for seed in args.seeds:
        for r in range(args.repeats):
            folder = run_dir(args.out, seed, r)
            if not args.reuse and (folder / "summary.json").exists():
                (folder / "summary.json").unlink()
            rows[(seed, r)] = run(seed, folder, args.extra)
    head = f"{'seed':>4s} {'run':>3s} | " + " | ".join(f"{label:>13s}" for _, label, _ in TARGETS)
    print(head)
    print("-" * len(head))
    for (seed, r), t in rows.items():
        print(f"{seed:4d} {r:3d} | " + " | ".join(f"{t[k]:13.3f}" for k, _, _ in TARGETS))
    print("-" * len(head))
    print(f"{'mean':>8s} | " + " | ".join(f"{np.mean([t[k] for t in rows.values()]):13.3f}" for k, _, _ in TARGETS))
    print(f"{'target':>8s} | " + " | ".join(f"{goal:>13s}" for _, _, goal in TARGETS))
    kept = [min(t["masked_kept_eeg_only"], t["masked_kept_ecg_only"]) for t in rows.values()]
    print(f"runs where learnt masking keeps >= 0.95 of both single modalities: {sum(k >= 0.95 for k in kept)} of {len(kept)}")


if __name__ == "__main__":
    main()
