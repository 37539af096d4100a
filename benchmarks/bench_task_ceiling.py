"""How much any classifier could score on each site's held-out subjects: the synthetic task's ceiling beside the features.

    python benchmarks/bench_task_ceiling.py [--seeds 0 1 2] [--runs DIR ...] [--population 3000]

The generator draws every 30-s epoch's stage, then a continuous latent (arousal, depth, REM drive)
around the stage's centre, and writes EEG and ECG as functions of that latent alone (plus noise
and subject traits that carry no stage). So no classifier of the signals can beat, on average,
the best classifier of the *latent itself*. This script replays the generator's random draws to
recover the exact latent of every window of every site (the records are not read for it; the
loaded labels are checked against the replayed stages), and scores, per site, on the held-out test
subjects of the project's split:

- `test`, `rarest`: the site's scored test windows and how many of them the rarest stage has (one
  window of a stage with one is a fifth of the balanced accuracy);
- `oracle all`: the oracle below on ALL the site's subjects, what the test subjects would score
  on average;
- `oracle`: the population-optimal classifier of the latent (quadratic discriminant with equal
  priors, the balanced-accuracy optimum, fitted on `--population` fresh simulated subjects);
- `latent LR`: the feature baseline's protocol (per-site logistic regression fitted on the site's
  train+val subjects) with the true latent as its three features: what finite training data costs;
- `features`: the feature baseline itself (band powers / HRV);
- with `--runs`, each run's per-site probes (its `summary.json`): the converged centralised
  reference and FedXAlign.

Per modality it prints the mean of sites and the pooled figure (one balanced accuracy over all
its sites' test windows, as `evaluate.pooled`), and "features + 0.05" (issue 12's target for the
converged reference) beside the oracle: the nearer the target to the oracle, the less of it any
model of the noisy signals can reach; above it, none can on that test set.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from sklearn.discriminant_analysis import QuadraticDiscriminantAnalysis

from fedxalign.configs import CONFIG_DIR
from fedxalign.shared.data.config import SiteConfig
from fedxalign.shared.data.site import federation_sites, load_federation_site
from fedxalign.shared.data.synthetic.federation import FederationSpec, SiteSpec, _labels, _record_names
from fedxalign.shared.data.synthetic.states import STAGES, draw_hypnogram, draw_latent, draw_subject
from fedxalign.simulations.baseline import balanced_accuracy, feature_baseline, readout_predictions, scored_windows
from fedxalign.simulations.evaluate import pooled
from fedxalign.simulations.run import prepare_federation
from fedxalign.simulations.settings import run_settings

COLUMNS = ("oracle", "latent LR", "features")  # then the runs' columns; before them: test windows, rarest class, oracle on all subjects


def replay_latents(spec: FederationSpec) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """{site name: {record name: (latent (epochs, 3), stage per epoch)}}, drawn as `generate_federation` draws them."""
    jobs: list[tuple[str, list[SiteSpec]]] = [(s.name, [s]) for s in spec.sites] + [(p.name, [p.eeg, p.ecg]) for p in spec.paired]
    out: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for k, (site_name, specs) in enumerate(jobs):
        rng = np.random.default_rng([spec.seed, k])
        head = specs[0]
        n_epochs = int(round(head.hours_per_record * 3600 / spec.epoch_s))
        subjects = [draw_subject(f"{site_name.replace('/', '_')}-S{i:02d}", rng) for i in range(head.n_subjects)]
        for i, subject in enumerate(subjects):
            for night in range(head.records_per_subject):
                tilt = np.asarray(head.stage_tilt) if head.stage_tilt is not None else None
                stages = draw_hypnogram(n_epochs, rng, tilt)
                latent = draw_latent(stages, subject, rng, spec.latent_spread)
                _labels(stages, head, rng)  # the draws the generator spends on label names, to stay in step
                for s in specs:
                    out.setdefault(s.name, {})[_record_names(s, i, night)[0]] = (latent, stages)
    return out


def population_oracle(spread: float, n_subjects: int, seed: int) -> QuadraticDiscriminantAnalysis:
    """The latent's class-conditional densities from fresh subjects; equal priors make it the balanced-accuracy optimum."""
    rng = np.random.default_rng([seed, 99])
    xs, ys = [], []
    for i in range(n_subjects):
        stages = draw_hypnogram(120, rng)
        xs.append(draw_latent(stages, draw_subject(f"pop{i}", rng), rng, spread))
        ys.append(stages)
    priors = np.full(len(STAGES), 1.0 / len(STAGES))
    return QuadraticDiscriminantAnalysis(priors=priors).fit(np.concatenate(xs), np.concatenate(ys))


def _record(records: dict[str, tuple[np.ndarray, np.ndarray]], name: str) -> tuple[np.ndarray, np.ndarray]:
    """A replayed record by the name the reader gave it (Sleep-EDF's reader drops the '-PSG' of the file name)."""
    if name in records:
        return records[name]
    hits = [k for k in records if k.startswith(name)]
    if len(hits) != 1:
        raise SystemExit(f"record {name!r}: {len(hits)} replayed records match; the generator's naming changed")
    return records[hits[0]]


def window_latents(data, records: dict[str, tuple[np.ndarray, np.ndarray]], epoch_s: float) -> np.ndarray:
    """The latent of each loaded window, found by its record and onset; refuses a window whose label disagrees."""
    idx = np.rint(data.onsets / epoch_s).astype(int)
    by_name = {r: _record(records, r) for r in set(data.record)}
    latent = np.stack([by_name[r][0][e] for r, e in zip(data.record, idx)])
    stages = np.array([by_name[r][1][e] for r, e in zip(data.record, idx)])
    names = [STAGES[s] for s in stages]
    agree = np.mean([data.vocabulary[y] == n for y, n in zip(data.y, names)])
    if agree < 0.99:
        raise SystemExit(f"{data.site.name}: only {agree:.1%} of the loaded labels match the replayed stages; "
                         "the generator changed and this replay no longer follows it")
    return latent


def run_probes(run_dirs: list[Path]) -> dict[str, dict]:
    """{column name: {site: (truth, prediction) or stored score}}: the converged reference's and FedXAlign's per-site
    probes of each run (its summary.json; a run from before predictions were stored gives its scores only)."""
    cols: dict[str, dict] = {}
    for d in run_dirs:
        methods = json.loads((d / "summary.json").read_text())["methods"]
        for method in ("central", "fedxalign"):
            if method not in methods:
                continue
            stored = methods[method].get("probe_predictions_site")
            values = ({s: (np.asarray(v["y"]), np.asarray(v["pred"])) for s, v in stored.items()} if stored
                      else {s: float(v) for s, v in methods[method]["probe_site"].items()})
            cols[method if len(run_dirs) == 1 else f"{method}:{d.name}"] = values
    return cols


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--runs", type=Path, nargs="*", default=[], help="run folders (summary.json) of ONE seed, given with --seeds N")
    ap.add_argument("--population", type=int, default=3000, help="fresh subjects the oracle is fitted on")
    args = ap.parse_args()
    if args.runs and len(args.seeds) != 1:
        raise SystemExit("--runs belong to one federation: give --seeds with that one seed")
    for seed in args.seeds:
        name = "default" if seed == 0 else f"default_seed{seed}"
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
            cfg = compose("simulate", [f"synthetic.seed={seed}", f"synthetic.name={name}", "federation.results_dir=unused"])
        settings = run_settings(cfg)
        root = Path(settings.federation.federation_dir)
        prepare_federation(cfg, root)
        spec = FederationSpec.from_mapping({k: v for k, v in dict(cfg.synthetic).items() if k != "name"})
        latents = replay_latents(spec)
        oracle = population_oracle(spec.latent_spread, args.population, seed)
        extra = run_probes(args.runs)
        cols = (*COLUMNS, *extra)
        print(f"\nseed {seed} ({root}): balanced accuracy on each site's held-out test subjects (chance 0.20)")
        print(f"{'site':16s} {'test':>5s} {'rarest':>6s} {'oracle all':>10s} " + " ".join(f"{c:>10.10s}" for c in cols))
        rows: dict[str, list[list[float]]] = {}
        windows: dict[str, list[list[tuple[np.ndarray, np.ndarray] | None]]] = {}
        for folder in federation_sites(root):
            site = SiteConfig.from_site_dir(folder)
            data = load_federation_site(folder, site, settings.data, settings.federation.cache_dir)
            z = window_latents(data, latents[site.name], spec.epoch_s)
            keep = scored_windows(data.y, data.split)
            features = feature_baseline(data)
            guess = oracle.predict(z)
            preds = [(data.y[keep], guess[keep]), readout_predictions(z, data.y, data.split, data.subject),
                     (features.y_test, features.pred_test), *[extra[c].get(site.name) for c in extra]]
            row = [score(p) for p in preds]
            every = balanced_accuracy(data.y, guess)
            counts = np.bincount(data.y[keep])
            rows.setdefault(site.modality, []).append([every, *row])
            windows.setdefault(site.modality, []).append(preds)
            print(f"{site.name:16s} {int(keep.sum()):5d} {int(counts[counts > 0].min()):6d} {every:10.3f} "
                  + " ".join(f"{v:10.3f}" for v in row))
        for modality, values in sorted(rows.items()):
            mean = np.nanmean(np.array(values), axis=0)
            print(f"{'mean ' + modality.upper():16s} {'':5s} {'':6s} " + " ".join(f"{v:10.3f}" for v in mean))
            together = [pool([site[k] for site in windows[modality]]) for k in range(len(cols))]
            print(f"{'pooled ' + modality.upper():16s} {'':5s} {'':6s} {'':10s} " + " ".join(f"{v:10.3f}" for v in together))
            for label, (o, f) in (("mean of sites", (mean[1], mean[3])), ("pooled", (together[0], together[2]))):
                print(f"  {modality.upper()} {label}: features + 0.05 = {f + 0.05:.3f}, the oracle {o:.3f}: "
                      f"headroom above the features {o - f:+.3f}")


def score(windows: tuple[np.ndarray, np.ndarray] | float | None) -> float:
    """Balanced accuracy of (truth, prediction); a run's stored score as it is."""
    if windows is None:
        return float("nan")
    if isinstance(windows, float):
        return windows
    return balanced_accuracy(*windows)


def pool(parts: list) -> float:
    """One balanced accuracy over the sites' windows (nan where a column has only stored scores)."""
    if any(p is None or isinstance(p, float) for p in parts):
        return float("nan")
    return pooled(dict(enumerate(parts)), range(len(parts)))


if __name__ == "__main__":
    main()
