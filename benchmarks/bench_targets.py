"""Issue 12's targets on several generated federations, DP on and off: prints each figure beside its target.

    python benchmarks/bench_targets.py [--seeds 0 1 2] [--epsilons 8 inf] [--out results/targets] [--reuse]

Each (seed, epsilon) is one `simulations.run` (all baselines) on the default federation spec
generated with that seed (seed 0 is the default federation itself); `--reuse` keeps runs whose
summary.json exists. Slow: about 6-10 minutes per run on 2 cores.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from seeded_runs import ROOT, parser, simulate


def run_dir(out: Path, seed: int, epsilon: float) -> Path:
    return out / f"seed{seed}_eps{'inf' if math.isinf(epsilon) else f'{epsilon:g}'}"


def figures(summary: dict) -> dict[str, float]:
    m = summary["methods"]
    cross = lambda r: (r["eeg_to_ecg"] + r["ecg_to_eeg"]) / 2  # noqa: E731
    return {
        "central_eeg": m["central"]["probe_eeg"], "central_ecg": m["central"]["probe_ecg"],
        "features_eeg": m["features"]["probe_eeg"], "features_ecg": m["features"]["probe_ecg"],
        "fed_eeg": m["fedxalign"]["probe_eeg"], "fed_ecg": m["fedxalign"]["probe_ecg"],
        "fed_anchor_eeg": m["fedxalign"]["within_eeg"], "fed_anchor_ecg": m["fedxalign"]["within_ecg"],
        "fed_cross": cross(m["fedxalign"]), "central_cross": cross(m["central"]),
        "transfer_ratio": cross(m["fedxalign"]) / max(cross(m["central"]), 1e-9),
        "wall_s": summary["total_wall_s"],
    }


def main() -> None:
    ap = parser(__doc__.splitlines()[0], ROOT / "results" / "targets")
    ap.add_argument("--epsilons", type=float, nargs="+", default=[8.0, math.inf])
    args = ap.parse_args()
    rows = {}
    for seed in args.seeds:
        for eps in args.epsilons:
            summary = simulate(seed, run_dir(args.out, seed, eps), [f"privacy.epsilon={eps}", *args.extra], args.reuse)
            rows[(seed, eps)] = figures(summary)
    head = (f"{'seed':>4s} {'eps':>5s} | {'central EEG/ECG':>15s} | {'features EEG/ECG':>16s} | {'FedX probe EEG/ECG':>18s} | "
            f"{'FedX anchor':>11s} | {'cross FedX/central':>18s} | {'ratio':>5s} | {'wall':>5s}")
    print(head)
    print("-" * len(head))
    for (seed, eps), f in rows.items():
        print(f"{seed:4d} {eps:5g} | {f['central_eeg']:7.3f}/{f['central_ecg']:.3f} | {f['features_eeg']:8.3f}/{f['features_ecg']:.3f} | "
              f"{f['fed_eeg']:10.3f}/{f['fed_ecg']:.3f} | {f['fed_anchor_eeg']:5.3f}/{f['fed_anchor_ecg']:.3f} | "
              f"{f['fed_cross']:10.3f}/{f['central_cross']:.3f} | {f['transfer_ratio']:5.2f} | {f['wall_s']:5.0f}")
    print()
    print("targets (each must hold on every seed):")
    checks = [
        ("converged centralised >= features + 0.05, EEG", lambda f: f["central_eeg"] - f["features_eeg"] - 0.05),
        ("converged centralised >= features + 0.05, ECG", lambda f: f["central_ecg"] - f["features_ecg"] - 0.05),
        ("FedXAlign (eps 8) within >= features, EEG", lambda f: f["fed_eeg"] - f["features_eeg"]),
        ("FedXAlign (eps 8) within >= features, ECG", lambda f: f["fed_ecg"] - f["features_ecg"]),
        ("FedXAlign (eps 8) transfer >= 0.85 x converged centralised", lambda f: f["transfer_ratio"] - 0.85),
    ]
    for label, margin in checks:
        eps_rows = {k: v for k, v in rows.items() if k[1] == 8.0 or "centralised" in label}
        margins = [margin(f) for f in eps_rows.values()]
        print(f"  {'met    ' if min(margins) >= 0 else 'NOT met'} {label}: worst margin {min(margins):+.3f}")
    for seed in args.seeds:
        if (seed, 8.0) in rows and (seed, math.inf) in rows:
            on, off = rows[(seed, 8.0)], rows[(seed, math.inf)]
            verdict = "met    " if off["fed_cross"] >= on["fed_cross"] - 0.02 else "NOT met"
            print(f"  {verdict} seed {seed}: DP off transfer {off['fed_cross']:.3f} not below DP on {on['fed_cross']:.3f} (0.02 slack)")
    walls = [f["wall_s"] for f in rows.values()]
    print(f"wall per run: median {np.median(walls):.0f} s")


if __name__ == "__main__":
    main()
