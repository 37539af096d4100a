"""Results folder of a simulation: tables, JSON/CSV, and plots a researcher can open."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402

from fedxalign.simulations.evaluate import SiteEmbeddings  # noqa: E402

METHOD_LABELS = {"fedxalign": "FedXAlign (aligned)", "fedavg": "FedAvg, no alignment", "local": "local only",
                 "central": "centralised, pooled, non-private, converged", "features": "features + logistic regression"}


def _cell(v: float, width: int) -> str:
    return f"{v:{width}.3f}" if v == v else f"{'-':>{width}s}"


def methods_table(methods: dict[str, dict]) -> str:
    cols = [("eeg_to_ecg", "EEG->ECG"), ("ecg_to_eeg", "ECG->EEG"), ("within_eeg", "EEG anchor"), ("probe_eeg", "EEG probe"),
            ("within_ecg", "ECG anchor"), ("probe_ecg", "ECG probe"), ("alignment_score", "align")]
    head = f"{'method':44s} " + " ".join(f"{label:>10s}" for _, label in cols)
    rows = [head, "-" * len(head)]
    for name, r in methods.items():
        rows.append(f"{METHOD_LABELS.get(name, name):44s} " + " ".join(_cell(r[k], 10) for k, _ in cols))
    return "\n".join(rows)


def pooled_probe_line(methods: dict[str, dict]) -> str:
    """The probe over each modality's pooled test windows, per method: the steadier figure (see `evaluate.pooled`)."""
    cells = [f"{name} {r['probe_pooled_eeg']:.3f}/{r['probe_pooled_ecg']:.3f}" for name, r in methods.items() if "probe_pooled_eeg" in r]
    return "probe over each modality's pooled test windows, EEG/ECG (steadier than the mean of sites): " + ", ".join(cells)


def sites_table(site_rows: list[dict], within: dict[str, dict[str, float]]) -> str:
    last = {}
    for r in site_rows:
        last[r["site"]] = r
    total_bytes: dict[str, float] = {}
    for r in site_rows:
        total_bytes[r["site"]] = total_bytes.get(r["site"], 0) + r["bytes_sent"]
    rounds = max((r["round"] for r in site_rows), default=1)
    head = f"{'site':16s} {'mod':6s} {'epsilon':>8s} {'budget':>7s} {'bytes/round':>12s} " + " ".join(f"{m:>9s}" for m in within)
    rows = [head, "-" * len(head)]
    for site, r in sorted(last.items()):
        accs = " ".join(_cell(within[m].get(site, float("nan")), 9) for m in within)
        rows.append(f"{site:16s} {r['modality']:6s} {r['epsilon']:8.3f} {r['epsilon_budget']:7.3g} {total_bytes[site] / rounds:12.0f} {accs}")
        # a paired node's halves are scored one modality at a time; its ledger and bytes are the node's, above
        halves = sorted({k for m in within for k in within[m] if k.startswith(f"{site}/")})
        for half in halves:
            accs = " ".join(_cell(within[m].get(half, float("nan")), 9) for m in within)
            rows.append(f"{'  ' + half[len(site):]:16s} {half.rsplit('/', 1)[1]:6s} {'':8s} {'':7s} {'':12s} {accs}")
    return "\n".join(rows)


def plot_rounds(rounds: list[dict], path: Path) -> None:
    r = [x["round"] for x in rounds]
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    ax[0].plot(r, [x["alignment_before"] for x in rounds], "o--", label="site prototypes as sent")
    ax[0].plot(r, [x["alignment_after"] for x in rounds], "o-", label="after server alignment")
    ax[0].set(xlabel="round", ylabel="same - different class cosine", title="Cross-modal alignment score")
    ax[0].legend()
    ax[1].plot(r, [x["mean_balanced_accuracy"] for x in rounds], "o-")
    ax[1].set(xlabel="round", ylabel="balanced accuracy", title="Mean site accuracy (held-out, nearest anchor)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_embeddings(embs: list[SiteEmbeddings], vocabulary: list[str], path: Path, title: str, max_points: int = 1500) -> None:
    z = np.concatenate([e.z for e in embs])
    y = np.concatenate([e.y for e in embs])
    mod = np.concatenate([[e.modality] * len(e.y) for e in embs])
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(y))[:max_points]
    xy = PCA(n_components=2, random_state=0).fit_transform(z)
    fig, ax = plt.subplots(figsize=(6, 5))
    cmap = plt.get_cmap("tab10")
    for m, marker in (("eeg", "o"), ("ecg", "^")):
        for c, name in enumerate(vocabulary):
            sel = idx[(mod[idx] == m) & (y[idx] == c)]
            ax.scatter(xy[sel, 0], xy[sel, 1], s=10, marker=marker, color=cmap(c), alpha=0.6,
                       label=f"{m.upper()} {name}")
    ax.set(title=title, xlabel="PC 1", ylabel="PC 2")
    ax.legend(fontsize=7, ncol=2, markerscale=1.5)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_summary(out: Path, summary: dict) -> None:
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=float))
