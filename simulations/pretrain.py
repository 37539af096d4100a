"""Pretrain one encoder per modality on public recordings by dual masking, and write their checkpoints.

`fedxalign-pretrain [corpus_dir=/data/public] [out_dir=checkpoints]`: every site folder under
`corpus_dir` (a `site.yaml` each, as for a federation site) is read with the federation's
preprocessing; labels are not used. Without `corpus_dir` the generator writes the `public`
corpus (configs/corpus/). Sites then start from `out_dir/{modality}.pt` with
`model.pretrained=out_dir/{modality}.pt`. The simulation calls `ensure_pretrained`, which caches
the checkpoints under the cache folder, keyed by everything that shapes them.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Callable

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from fedxalign.shared.data.config import DataConfig, SiteConfig, fingerprint
from fedxalign.shared.data.site import federation_sites, load_federation_site
from fedxalign.shared.data.synthetic.federation import ensure_federation
from fedxalign.shared.models.encoder import EncoderConfig, build_encoder
from fedxalign.shared.models.pretraining import CHECKPOINT_FORMAT, PretrainConfig, fit_token_scaling, pretrain, save_checkpoint
from fedxalign.shared.runconfig import RunSettings, encoder_for
from fedxalign.simulations.generate import federation_spec
from fedxalign.configs import CONFIG_DIR

log = logging.getLogger(__name__)


def corpus_windows(corpus_dir: Path, data: DataConfig, cache_dir: str | Path | None) -> dict[str, list[torch.Tensor]]:
    """All windows of every corpus site, per modality, as (n, channels, patches, samples) tensors."""
    by_modality: dict[str, list[torch.Tensor]] = {}
    for folder in federation_sites(corpus_dir):
        d = load_federation_site(folder, SiteConfig.from_site_dir(folder), data, cache_dir)
        if len(d.y):
            by_modality.setdefault(d.site.modality, []).append(d.dataset(None).x)
    if not by_modality:
        raise SystemExit(f"{corpus_dir}: no site with windows to pretrain on")
    return by_modality


def pretrain_corpus(corpus_dir: Path, out_dir: Path, data: DataConfig, model_for: Callable[[str], EncoderConfig],
                    cfg: PretrainConfig, cache_dir: str | Path | None = None) -> dict[str, Path]:
    """`model_for(modality)`: the encoder settings the sites of that modality will use (RunSettings.model_for)."""
    written = {}
    for modality, windows in sorted(corpus_windows(corpus_dir, data, cache_dir).items()):
        mcfg = dataclasses.replace(model_for(modality), pretrained="")
        encoder = build_encoder(mcfg, seed=cfg.seed)
        losses = pretrain(encoder, windows, cfg, desc=f"pretraining {modality} ({sum(len(w) for w in windows)} windows)")
        scaled = fit_token_scaling(encoder, windows)  # the public corpus sets the tokens' scaling: no site's data does
        written[modality] = save_checkpoint(encoder, out_dir / f"{modality}.pt",
                                            {"corpus": str(corpus_dir), "epoch_losses": losses, "token_scaling": scaled})
        log.info("%s: reconstruction MSE %.4f -> %.4f over %d epochs", modality, losses[0], losses[-1], len(losses))
    return written


def ensure_pretrained(corpus_spec: DictConfig, data_dir: Path, cache_dir: Path, settings: RunSettings, cfg: PretrainConfig) -> str:
    """The `model.pretrained` template of the public checkpoints, pretrained once per corpus and settings."""
    data = settings.data
    models = {m: dataclasses.replace(settings.model_for(m), pretrained="") for m in sorted(data.preprocess)}
    key = fingerprint(OmegaConf.to_container(corpus_spec, resolve=True), data, models, cfg, CHECKPOINT_FORMAT)
    out = cache_dir / "pretrained" / key
    corpus = data_dir / f"corpus-{corpus_spec.name}"
    if not all((out / f"{m}.pt").is_file() for m in data.preprocess):
        if ensure_federation(federation_spec(corpus_spec), corpus):
            log.info("wrote the public corpus %r under %s", corpus_spec.name, corpus)
        pretrain_corpus(corpus, out, data, settings.model_for, cfg, cache_dir)
    return str(out / "{modality}.pt")


def pretrain_settings(cfg: DictConfig) -> PretrainConfig:
    values = OmegaConf.to_container(cfg.pretraining, resolve=True)
    values.pop("source", None)
    return PretrainConfig.from_mapping(values)


@hydra.main(version_base=None, config_path=CONFIG_DIR, config_name="pretrain")
def main(cfg: DictConfig) -> None:
    data = DataConfig.from_mapping(OmegaConf.to_container(cfg.data, resolve=True))
    model_values = OmegaConf.to_container(cfg.model, resolve=True)
    by_modality = model_values.pop("by_modality", None) or {}
    model = EncoderConfig.from_mapping(model_values)

    def model_for(m: str) -> EncoderConfig:  # what the run's sites of modality m will build
        return encoder_for(model, m, data.preprocess[m], by_modality.get(m))

    corpus = Path(cfg.corpus_dir) if cfg.corpus_dir else Path(cfg.paths.data_dir) / f"corpus-{cfg.corpus.name}"
    if not cfg.corpus_dir:
        ensure_federation(federation_spec(cfg.corpus), corpus)
    written = pretrain_corpus(corpus, Path(cfg.out_dir), data, model_for, pretrain_settings(cfg), cfg.paths.cache_dir)
    for modality, path in written.items():
        print(f"{modality}: {path}")
    print(f"start sites from them with model.pretrained={Path(cfg.out_dir) / '{modality}.pt'}")


if __name__ == "__main__":
    main()
