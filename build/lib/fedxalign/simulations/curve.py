"""The privacy-utility curve of a sweep: one figure and one table from the runs of `-m privacy.epsilon=3,8,inf`.

Hydra calls `PrivacyCurve.on_multirun_end` when the sweep ends (configs/simulate.yaml); for a
sweep folder from earlier, `python -m fedxalign.simulations.curve SWEEP_DIR`. Each run's `summary.json`
gives FedXAlign's within-modality (linear probe) and cross-modal scores at its epsilon; the
references that spend no privacy (converged centralised, features, and local-only at the same
epsilon) are drawn as lines at their mean over the runs.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from hydra.experimental.callback import Callback  # noqa: E402

COLUMNS = ("epsilon", "within_eeg", "within_ecg", "cross_modal")


def _cross(m: dict) -> float:
    return (m["eeg_to_ecg"] + m["ecg_to_eeg"]) / 2


def collect(sweep_dir: Path) -> list[dict[str, Any]]:
    """One row per finished run of the sweep (its summary.json), sorted by epsilon (no DP last)."""
    rows = []
    for path in sorted(sweep_dir.glob("*/summary.json")):
        s = json.loads(path.read_text())
        m = s["methods"]
        row = {"run": path.parent.name, "epsilon": float(s.get("epsilon", math.inf)),
               "within_eeg": m["fedxalign"]["probe_eeg"], "within_ecg": m["fedxalign"]["probe_ecg"],
               "cross_modal": _cross(m["fedxalign"])}
        for ref in ("central", "features", "local"):
            if ref in m:
                row |= {f"{ref}_within_eeg": m[ref]["probe_eeg"], f"{ref}_within_ecg": m[ref]["probe_ecg"],
                        f"{ref}_cross_modal": _cross(m[ref])}
        rows.append(row)
    return sorted(rows, key=lambda r: r["epsilon"])


def table(rows: list[dict[str, Any]]) -> str:
    head = f"{'epsilon':>8s} {'within EEG':>11s} {'within ECG':>11s} {'cross-modal':>12s}   (FedXAlign; within = per-site probe)"
    lines = [head]
    for r in rows:
        eps = "no DP" if math.isinf(r["epsilon"]) else f"{r['epsilon']:g}"
        lines.append(f"{eps:>8s} {r['within_eeg']:11.3f} {r['within_ecg']:11.3f} {r['cross_modal']:12.3f}")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    finite = [r["epsilon"] for r in rows if math.isfinite(r["epsilon"])]
    no_dp_x = max(finite) * 3 if finite else 1.0
    xs = [r["epsilon"] if math.isfinite(r["epsilon"]) else no_dp_x for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), sharey=True)
    refs = {"central": ("converged centralised", "k", "-"), "features": ("features + LR", "tab:gray", "--"),
            "local": ("local only (mean)", "tab:orange", ":")}
    for ax, key, title in zip(axes, ("within_eeg", "within_ecg", "cross_modal"),
                              ("within EEG (per-site probe)", "within ECG (per-site probe)", "cross-modal transfer")):
        ax.plot(xs, [r[key] for r in rows], "o-", color="tab:blue", label="FedXAlign")
        for ref, (label, colour, style) in refs.items():
            values = [r[f"{ref}_{key}"] for r in rows if f"{ref}_{key}" in r and np.isfinite(r[f"{ref}_{key}"])]
            if values:
                ax.axhline(float(np.mean(values)), color=colour, linestyle=style, label=label)
        ax.axhline(0.2, color="tab:red", linewidth=0.8, alpha=0.5, label="chance")
        ax.set_xscale("log")
        ticks = sorted(set(finite)) + ([no_dp_x] if len(finite) < len(rows) else [])
        ax.set_xticks(ticks, [f"{t:g}" for t in sorted(set(finite))] + (["no DP"] if len(finite) < len(rows) else []))
        ax.set(title=title, xlabel="epsilon per site")
    axes[0].set_ylabel("balanced accuracy (held-out subjects)")
    handles = {label: h for ax in axes for h, label in zip(*ax.get_legend_handles_labels())}  # features: within panels only
    axes[-1].legend(handles.values(), handles.keys(), fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_curve(sweep_dir: Path) -> list[dict[str, Any]]:
    rows = collect(sweep_dir)
    if not rows:
        print(f"{sweep_dir}: no finished run (summary.json) to draw a curve from")
        return rows
    with (sweep_dir / "privacy_utility.csv").open("w", newline="") as fh:
        keys = sorted({k for r in rows for k in r}, key=lambda k: (k not in COLUMNS, k))
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    plot(rows, sweep_dir / "privacy_utility.png")
    print("privacy-utility curve:")
    print(table(rows))
    print(f"figure and table: {sweep_dir / 'privacy_utility.png'}, {sweep_dir / 'privacy_utility.csv'}")
    return rows


class PrivacyCurve(Callback):
    """Hydra callback: after a multirun, draw the curve over its runs (a sweep without summaries draws nothing)."""

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        write_curve(Path(config.hydra.sweep.dir))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path)
    write_curve(parser.parse_args().sweep_dir)


if __name__ == "__main__":
    main()
