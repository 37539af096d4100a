"""What a linear read-out gets from each whole-window input the encoders can take, per site, beside the feature baseline.

    python benchmarks/bench_input_readout.py [--bins 30 40] [--max-hz 30 40] [synthetic.seed=1 synthetic.name=default_seed1]

For every site of a generated federation: a per-site logistic regression (the feature baseline's
protocol: fit on train+val subjects, balanced accuracy on test subjects) on the hand-made
features (band powers / HRV), on the encoder's whole-window spectrum token input
(`CrissCrossEncoder._window_spectrum`, `--bins` up to `--max-hz` for EEG / ECG), on the
heart-rhythm statistics (`window_rhythm`, ECG) and on both. No training: it bounds what those
tokens can bring before any encoder learns from them. A second table fits the read-out on the
OTHER sites of the same modality (their train+val subjects) and scores each site's test
subjects: whether an input is read the same way everywhere, as global anchors need.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from sklearn.metrics import balanced_accuracy_score

from fedxalign.configs import CONFIG_DIR
from fedxalign.shared.data.site import federation_sites, load_federation_site
from fedxalign.shared.data.config import SiteConfig
from fedxalign.shared.models.encoder import build_encoder
from fedxalign.shared.data.features import FEATURES
from fedxalign.simulations.baseline import fit_readout, readout
from fedxalign.simulations.run import prepare_federation
from fedxalign.simulations.settings import run_settings

WIDTHS = (9, 9, 7, 6)  # columns: features, spectrum, rhythm, both


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bins", type=int, nargs=2, default=[30, 40], metavar=("EEG", "ECG"))
    ap.add_argument("--max-hz", type=float, nargs=2, default=[30.0, 40.0], metavar=("EEG", "ECG"))
    ap.add_argument("overrides", nargs="*", help="Hydra overrides of the simulation config (which federation)")
    args = ap.parse_args()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        cfg = compose("simulate", [*args.overrides, "federation.results_dir=unused"])  # nothing is written
    settings = run_settings(cfg)
    root = Path(settings.federation.federation_dir)
    prepare_federation(cfg, root)
    spectrum = {"eeg": (args.bins[0], args.max_hz[0]), "ecg": (args.bins[1], args.max_hz[1])}
    print(f"{'site':16s} " + " ".join(f"{h:>{w}s}" for h, w in zip(("features", "spectrum", "rhythm", "both"), WIDTHS)))
    inputs: dict[str, list[tuple[str, np.ndarray, np.ndarray, dict[str, np.ndarray]]]] = {}
    for folder in federation_sites(root):
        site = SiteConfig.from_site_dir(folder)
        data = load_federation_site(folder, site, settings.data, settings.federation.cache_dir)
        m = site.modality
        bins, max_hz = spectrum[m]
        enc = build_encoder(dataclasses.replace(settings.model_for(m), global_bins=bins, global_max_hz=max_hz), seed=0)
        x = data.dataset(None).x
        with torch.no_grad():
            spec = enc._window_spectrum(x).numpy()
            rhythm = enc._window_rhythm(x).numpy() if enc.config.derived_channels else None
        feats = FEATURES[m](data.x, data.preprocess.sfreq)  # the feature baseline's input, read once for both tables
        sub = data.subject
        row = [readout(feats, data.y, data.split, sub), readout(spec, data.y, data.split, sub)]
        row += ([readout(rhythm, data.y, data.split, sub), readout(np.c_[spec, rhythm], data.y, data.split, sub)]
                if rhythm is not None else [np.nan, np.nan])
        print(f"{site.name:16s} " + " ".join(f"{v:{w}.3f}" for v, w in zip(row, WIDTHS)))
        inputs.setdefault(m, []).append((site.name, data.y, data.split, sub, {"features": feats, "spectrum": spec}))
    print("\nfitted on the other sites of the modality, scored on this site's test subjects:")
    print(f"{'site':16s} {'features':>9s} {'spectrum':>9s}")
    for sites in inputs.values():
        for i, (name, y, split, _, own) in enumerate(sites):
            others = [s for j, s in enumerate(sites) if j != i]
            row = [other_sites_readout([(s[4][k], s[1], s[2], s[3]) for s in others], own[k], y, split) for k in ("features", "spectrum")]
            print(f"{name:16s} " + " ".join(f"{v:9.3f}" for v in row))


def other_sites_readout(train: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]], features: np.ndarray, y: np.ndarray,
                        split: np.ndarray) -> float:
    """Balanced accuracy on this site's test subjects of a read-out fitted on `train` (features, labels, split, subjects) sets."""
    if not train:
        return float("nan")
    x_fit = np.concatenate([f[s != "test"] for f, _, s, _ in train])
    y_fit = np.concatenate([lab[s != "test"] for _, lab, s, _ in train])
    subjects = np.concatenate([np.char.add(f"{i}:", np.asarray(g)[s != "test"].astype(str)) for i, (_, _, s, g) in enumerate(train)])
    keep = (split == "test") & np.isin(y, np.unique(y_fit))
    if not keep.any():
        return float("nan")
    model = fit_readout(x_fit, y_fit, subjects)
    return float(balanced_accuracy_score(y[keep], model.predict(features[keep])))


if __name__ == "__main__":
    main()
