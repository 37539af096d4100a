"""The main job: simulate the whole federation on this machine with Flower's simulation engine.

`python -m fedxalign.simulations.run [hydra overrides]` (README's `make run`). Generates the configured
synthetic federation when it is missing, runs FedXAlign in Flower's simulation engine with the
references trained beside it in worker processes (`simulations.references`: local-only,
per-modality FedAvg without alignment, centralised pooled non-private), and writes a results
folder with metrics, the config used and plots.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig
from tqdm.auto import tqdm

from fedxalign.shared.data.config import SiteConfig
from fedxalign.shared.data.paired import (PairedSiteConfig, PairedSiteData, federation_nodes, is_paired_dir, load_paired_site,
                                          paired_node_of)
from fedxalign.shared.data.site import SiteData, federation_sites, load_federation_site
from fedxalign.shared.data.synthetic.federation import MANIFEST, ensure_federation, generate_federation
from fedxalign.shared.privacy.policy import describe_unit
from fedxalign.shared.runconfig import RunSettings
from fedxalign.simulations.generate import federation_spec
from fedxalign.configs import CONFIG_DIR
from fedxalign.simulations.flower_run import run_federation_simulation
from fedxalign.simulations.settings import run_settings

log = logging.getLogger("fedxalign.simulations.run")


def load_sites(root: Path, settings: RunSettings, progress: bool = True) -> list[SiteData]:
    return [load_federation_site(folder, SiteConfig.from_site_dir(folder), settings.data, settings.federation.cache_dir)
            for folder in tqdm(federation_sites(root), desc="loading sites", unit="site", disable=not progress)]


def prepare_federation(cfg: DictConfig, root: Path) -> None:
    """The synthetic federation the run reads: its own folder follows the config; another folder is only filled when empty.

    `<data_dir>/<synthetic.name>` is the generator's output for the `synthetic` config, so an
    edited spec regenerates it. A `federation_dir` pointed elsewhere may hold a federation the
    researcher generated or arranged by hand: it is never regenerated over.
    """
    spec = federation_spec(cfg.synthetic)
    if root.resolve() == (Path(cfg.paths.data_dir) / cfg.synthetic.name).resolve():
        if ensure_federation(spec, root):
            log.info("generated the %r federation under %s", cfg.synthetic.name, root)
    elif not (root / MANIFEST).is_file():
        log.info("generating the %r federation under %s", cfg.synthetic.name, root)
        generate_federation(spec, root)


def mark_paired_folders(root: Path) -> None:
    """Federations generated before paired sites joined as one node lack `paired.yaml`; write it from the manifest."""
    import yaml

    manifest = yaml.safe_load((root / MANIFEST).read_text()) or {}
    for name, halves in (manifest.get("paired") or {}).items():
        if not is_paired_dir(root / name) and all((root / h / "site.yaml").is_file() for h in halves.values()):
            PairedSiteConfig(name, root / halves["eeg"], root / halves["ecg"]).write(root / name)


def _fusion(paired: list[PairedSiteData], sites: list[SiteData], settings: RunSettings, out: Path, state):
    if not paired or not settings.fusion.enabled:
        return None
    from fedxalign.server.strategy import write_csv
    from fedxalign.simulations.fusion_eval import fusion_table

    table = fusion_table(paired, sites, settings, out / "state", state)
    write_csv(out / "fusion.csv", [{"strategy": r, **cols} for r, cols in table.rows.items()])
    return table


def simulate(cfg: DictConfig) -> dict:
    from fedxalign.server.strategy import ServerState, write_csv
    from fedxalign.simulations import report
    from fedxalign.simulations.baseline import feature_baseline
    from fedxalign.simulations.centralised import ReferenceConfig
    from fedxalign.simulations.evaluate import evaluate, feature_row, from_states
    from fedxalign.simulations.references import BackgroundReferences

    t0 = time.time()
    settings = run_settings(cfg)
    reference = ReferenceConfig.from_mapping(cfg.reference)  # a bad setting stops the run before any work
    out = Path(settings.federation.results_dir)
    root = Path(settings.federation.federation_dir)
    prepare_federation(cfg, root)
    if cfg.pretraining.source == "public":
        from fedxalign.simulations.pretrain import ensure_pretrained, pretrain_settings

        template = ensure_pretrained(cfg.corpus, Path(cfg.paths.data_dir), Path(settings.federation.cache_dir), settings,
                                     pretrain_settings(cfg))
        settings = dataclasses.replace(settings, model=dataclasses.replace(settings.model, pretrained=template))
    elif cfg.pretraining.source != "none":
        raise SystemExit(f"pretraining.source={cfg.pretraining.source!r}: use public or none")
    elif not settings.model.pretrained and any(settings.model_for(m).has_window_tokens for m in settings.data.preprocess):
        log.warning("pretraining.source=none and no model.pretrained: the whole-window tokens read their input unscaled (their "
                    "scaling comes with a public checkpoint); measured with the spectrum token unscaled, the anchors fell on two seeds of three")
    mark_paired_folders(root)
    sites = load_sites(root, settings)
    nodes = federation_nodes(root, settings.federation.paired_as == "one")
    paired = [load_paired_site(n, settings.data, settings.federation.cache_dir) for n in nodes if is_paired_dir(n)]
    if paired:
        settings.train_for_paired()  # refuse per-modality training overrides before any round, not at the paired site
    settings = dataclasses.replace(settings, federation=dataclasses.replace(settings.federation, expected_sites=len(nodes)))
    n_classes = len(settings.data.vocabulary)
    names = {p.name for p in paired}
    singles = [d for d in sites if not paired_node_of(d.site.name, names)]
    kinds = f"{sum(d.site.modality == 'eeg' for d in singles)} EEG, {sum(d.site.modality == 'ecg' for d in singles)} ECG"
    kinds += f", {len(paired)} paired EEG+ECG (one node each)" if paired else ""
    print(f"FedXAlign: {len(nodes)} sites ({kinds}), {settings.federation.rounds} rounds, "
          f"privacy {'epsilon ' + format(settings.privacy.epsilon, 'g') if settings.privacy.enabled else 'off'} per site", flush=True)
    for p in paired:
        print(f"  paired site {p.name}: {len(p.y)} EEG+ECG pairs of {len(set(p.subject))} subjects "
              f"({len(p.eeg.y)} EEG, {len(p.ecg.y)} ECG windows); the pair is its privacy unit", flush=True)
    background = BackgroundReferences([b for b in ("fedavg", "local", "central") if b in cfg.baselines], settings,
                                      out / "baselines", reference, paired=names)
    if background.kinds:
        print(f"references ({', '.join(background.LABELS[k] for k in background.kinds)}) train beside the federation, "
              "on the cores its rounds leave idle", flush=True)
    with background:
        t_fed = time.time()
        run_federation_simulation(settings, len(nodes), cfg.num_cpus_per_client, out / "flower")
        fed_wall = time.time() - t_fed
        state = ServerState.load(out / "checkpoint.npz")
        embs = {"fedxalign": from_states(sites, settings, out / "state", state, paired=names)}
        scored = {"fedxalign": evaluate(embs["fedxalign"], n_classes)}  # while the references train, as each scores its own
        fusion = _fusion(paired, sites, settings, out, state)
        features = [feature_baseline(d) for d in sites] if "features" in cfg.baselines else None
        references = background.wait()
    for kind, result in references.items():
        embs[kind], scored[kind] = result.embeddings, result.scores
    reference = references["central"].reference if "central" in references else None
    methods = {name: scored[name] for name in ("fedxalign", "fedavg", "local", "central") if name in scored}
    if features is not None:
        methods["features"] = feature_row(features)
    rounds = json.loads((out / "rounds.json").read_text())
    with (out / "sites.csv").open() as fh:
        site_rows = [{k: (float(v) if k not in ("site", "modality") else v) for k, v in r.items()} for r in csv.DictReader(fh)]
    probes = {name: m["probe_site"] for name, m in methods.items()}
    write_csv(out / "methods.csv", [{"method": k, **{kk: vv for kk, vv in v.items() if not kk.endswith("_site")}}
                                    for k, v in methods.items()])
    if cfg.plots:
        report.plot_rounds(rounds, out / "rounds.png")
        report.plot_embeddings(embs["fedxalign"], settings.data.vocabulary, out / "embeddings_fedxalign.png", "FedXAlign: EEG and ECG test embeddings")
        if "fedavg" in embs:
            report.plot_embeddings(embs["fedavg"], settings.data.vocabulary, out / "embeddings_fedavg.png", "FedAvg without alignment")
    budget_ok = all(r["epsilon"] <= r["epsilon_budget"] + 1e-9 for r in site_rows)
    summary = {
        "methods": methods, "rounds": rounds, "federated_wall_s": fed_wall, "total_wall_s": time.time() - t0,
        "epsilon": settings.privacy.epsilon if settings.privacy.enabled else float("inf"),
        "epsilon_within_budget": budget_ok, "results_dir": str(out),
        "transfer_vs_central": {k: (m["eeg_to_ecg"] + m["ecg_to_eeg"]) / max(1e-9, (methods["central"]["eeg_to_ecg"] + methods["central"]["ecg_to_eeg"]))
                                for k, m in methods.items() if k != "features"} if "central" in methods else {},
        "fusion": {"rows": fusion.rows, "targets": fusion.targets(), "test_pairs": fusion.n_pairs} if fusion else None,
        "reference": {"best_epoch": reference.best_epoch, "epochs_run": reference.epochs_run,
                      "val_balanced_accuracy": reference.val_balanced_accuracy, "final_lr": reference.final_lr,
                      "read_from_cache": references["central"].cached} if reference else None,
    }
    report.write_summary(out, summary)
    print()
    print("cross-modal transfer and within-modality balanced accuracy on held-out test subjects (chance 0.20);")
    print("'anchor' = nearest class anchor, 'probe' = per-site linear probe fitted on the site's train+val subjects:")
    print(report.methods_table(methods))
    print(report.pooled_probe_line(methods))
    if reference:
        print(f"centralised reference: best validation epoch {reference.best_epoch} of {reference.epochs_run} run "
              f"(early stopping, patience {cfg.reference.patience}; learning rate {cfg.reference.lr:g} -> {reference.final_lr:.2g}); "
              "FedXAlign transfer = "
              f"{summary['transfer_vs_central']['fedxalign']:.2f} of it")
    if fusion:
        from fedxalign.simulations.fusion_eval import format_table

        t = fusion.targets()
        print()
        print(f"fusion at paired sites ({fusion.n_pairs} held-out test pairs) and on single-modality sites, "
              "balanced accuracy by missing-modality strategy:")
        print(format_table(fusion))
        print(f"fusion (both) minus the better single modality: {t['fusion_both_minus_best_single']:+.3f} (concat decoder), "
              f"{t['masked_both_minus_best_single']:+.3f} (masked); learnt masking keeps {t['masked_kept_eeg_only']:.2f} (EEG only) "
              f"and {t['masked_kept_ecg_only']:.2f} (ECG only) of the encoder alone, and beats zero imputation by "
              f"{t['masked_minus_zero_eeg_only']:+.3f} / {t['masked_minus_zero_ecg_only']:+.3f}")
    print()
    print("per site (final round): spent epsilon, bytes sent per round, within-site balanced accuracy (probe) per method:")
    print(report.sites_table(site_rows, probes))
    print()
    if settings.privacy.enabled:
        k = max(d.max_windows_per_subject("train") for d in sites)
        print(describe_unit(settings.privacy.epsilon, settings.privacy.delta, settings.privacy.unit, k))
    print(f"every site within its budget: {budget_ok}; federated run {fed_wall:.0f} s, total {time.time() - t0:.0f} s; results in {out}")
    return summary


@hydra.main(version_base=None, config_path=CONFIG_DIR, config_name="simulate")
def main(cfg: DictConfig) -> float:
    summary = simulate(cfg)
    m = summary["methods"]["fedxalign"]
    return (m["eeg_to_ecg"] + m["ecg_to_eeg"]) / 2


if __name__ == "__main__":
    main()
