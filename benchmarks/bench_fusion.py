"""Issue 9's fusion targets (and FedXAlign's cross-modal transfer) on several generated federations, each run repeated.

    python benchmarks/bench_fusion.py [--seeds 0 1 2] [--repeats 1] [--out results/fusion] [--reuse] [-- overrides]

Each run is FedXAlign alone (`baselines=[]`, epsilon 8 unless overridden) on the default
federation spec generated with that seed; its fusion table is scored on the paired site's
held-out subjects (two of eight, about 70 pairs), so one run's figures move by several
hundredths, and the mean over seeds and repeats is the figure to read. About 2-3 minutes per
run on 2 cores. `--reuse` keeps runs whose summary.json exists.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from seeded_runs import ROOT, parser, simulate

TARGETS = [  # (summary key, column label, target)
    ("fusion_both_minus_best_single", "both-best", "> 0"),
    ("masked_kept_eeg_only", "kept EEG", ">= 0.95"),
    ("masked_kept_ecg_only", "kept ECG", ">= 0.95"),
    ("masked_minus_zero_eeg_only", "mask-zero EEG", "> 0"),
    ("masked_minus_zero_ecg_only", "mask-zero ECG", "> 0"),
    ("transfer", "transfer", "(higher)"),
]


def run_dir(out: Path, seed: int, repeat: int) -> Path:
    return out / (f"seed{seed}" if repeat == 0 else f"seed{seed}_r{repeat}")


def fusion_targets(summary: dict, folder: Path) -> dict[str, float]:
    """The run's fusion targets, and FedXAlign's cross-modal transfer (mean of both directions) beside them."""
    if not summary.get("fusion"):
        raise SystemExit(f"{folder}: the run has no fusion table (no paired site, or fusion.enabled=false)")
    ours = summary["methods"]["fedxalign"]
    return summary["fusion"]["targets"] | {"transfer": (ours["eeg_to_ecg"] + ours["ecg_to_eeg"]) / 2}


def main() -> None:
    ap = parser(__doc__.splitlines()[0], ROOT / "results" / "fusion")
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    rows = {}
    for seed in args.seeds:
        for r in range(args.repeats):
            folder = run_dir(args.out, seed, r)
            summary = simulate(seed, folder, ["privacy.epsilon=8", "baselines=[]", *args.extra], args.reuse)
            rows[(seed, r)] = fusion_targets(summary, folder)
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
