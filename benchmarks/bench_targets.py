"""Issue 12's targets on several generated federations, DP on and off: prints each figure beside its target.

    python benchmarks/bench_targets.py [--seeds 0 1 2] [--epsilons 8 inf] [--out results/targets] [--reuse]

Each (seed, epsilon) is one `simulations.run` (all baselines) on the default federation spec
generated with that seed (seed 0 is the default federation itself); `--reuse` keeps runs whose
summary.json exists. Slow: about 6-8 minutes per run on 2 cores (352-479 s measured for README).

The targets are judged on the mean of sites, as issue 12 states them. A second table gives the
probe pooled over each modality's test windows and each margin over the features with a 90%
paired-bootstrap interval, from the per-window predictions every run keeps in summary.json (runs
from before that was kept print nan there).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from seeded_runs import ROOT, parser, simulate


def run_dir(out: Path, seed: int, epsilon: float) -> Path:
    return out / f"seed{seed}_eps{'inf' if math.isinf(epsilon) else f'{epsilon:g}'}"


def _windows(method: dict, modality_sites: list[str]) -> tuple[np.ndarray, np.ndarray] | None:
    """(truth, prediction) of a method's probe over the named sites' test windows, in site order; None from an older summary."""
    preds = method.get("probe_predictions_site")
    if preds is None or any(s not in preds for s in modality_sites):
        return None
    return (np.concatenate([np.asarray(preds[s]["y"], np.int64) for s in modality_sites]),
            np.concatenate([np.asarray(preds[s]["pred"], np.int64) for s in modality_sites]))


def balanced(y: np.ndarray, pred: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Balanced accuracy of each bootstrap row of window indices `idx` (rows x windows)."""
    hit, truth = pred[idx] == y[idx], y[idx]
    recalls = [np.sum(hit & (truth == c), 1) / np.maximum(np.sum(truth == c, 1), 1) for c in np.unique(y)]
    return np.mean(recalls, axis=0)


def margin_interval(a: tuple[np.ndarray, np.ndarray] | None, b: tuple[np.ndarray, np.ndarray] | None,
                    draws: int = 2000, seed: int = 0) -> tuple[float, float]:
    """90% interval of balanced accuracy a - b on the same test windows: a paired bootstrap of windows within each stage.

    Windows of one subject are not independent, so the interval is narrower than a resampling of
    subjects would give (most sites test one or two subjects, too few to resample): read it as a
    lower bound on the uncertainty."""
    if a is None or b is None or len(a[0]) != len(b[0]) or not np.array_equal(a[0], b[0]) or not len(a[0]):
        return float("nan"), float("nan")
    y = a[0]
    rng = np.random.default_rng(seed)
    idx = np.concatenate([rng.choice(np.flatnonzero(y == c), (draws, int(np.sum(y == c)))) for c in np.unique(y)], axis=1)
    diff = balanced(y, a[1], idx) - balanced(y, b[1], idx)
    return float(np.quantile(diff, 0.05)), float(np.quantile(diff, 0.95))


def figures(summary: dict) -> dict[str, float]:
    m = summary["methods"]
    cross = lambda r: (r["eeg_to_ecg"] + r["ecg_to_eeg"]) / 2  # noqa: E731
    nan = float("nan")
    pooled = {f"pooled_{name}_{mod}": m[key].get(f"probe_pooled_{mod}", nan)
              for name, key in (("central", "central"), ("features", "features"), ("fed", "fedxalign")) for mod in ("eeg", "ecg")}
    intervals = {}
    for mod in ("eeg", "ecg"):
        sites = sorted(s for s, v in m["features"].get("probe_predictions_site", {}).items() if v["modality"] == mod)
        feats = _windows(m["features"], sites)
        intervals[f"ci_fed_{mod}"] = margin_interval(_windows(m["fedxalign"], sites), feats)
        intervals[f"ci_central_{mod}"] = margin_interval(_windows(m["central"], sites), feats)
    return {
        **pooled, **intervals,
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
    print()
    print("the probe pooled over each modality's sites (every test window predicted by its own site's probe, one balanced")
    print("accuracy: a site's rarest stage often has 1-3 test windows, so the mean of sites moves by hundredths per window),")
    print("and the 90% paired-bootstrap interval of each margin over the features (windows resampled within stages):")
    print(f"{'seed':>4s} {'eps':>5s} | {'mod':3s} | {'central':>7s} {'features':>8s} {'FedX':>6s} | "
          f"{'central - features [90%]':>26s} | {'FedX - features [90%]':>23s}")
    for (seed, eps), f in rows.items():
        for mod in ("eeg", "ecg"):
            c, ft, x = f[f"pooled_central_{mod}"], f[f"pooled_features_{mod}"], f[f"pooled_fed_{mod}"]
            lo_c, hi_c = f[f"ci_central_{mod}"]
            lo_x, hi_x = f[f"ci_fed_{mod}"]
            print(f"{seed:4d} {eps:5g} | {mod.upper():3s} | {c:7.3f} {ft:8.3f} {x:6.3f} | "
                  f"{c - ft:+7.3f} [{lo_c:+.3f}, {hi_c:+.3f}] | {x - ft:+6.3f} [{lo_x:+.3f}, {hi_x:+.3f}]")
    walls = [f["wall_s"] for f in rows.values()]
    print(f"wall per run: median {np.median(walls):.0f} s")


if __name__ == "__main__":
    main()
