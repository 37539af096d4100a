"""The main job: make sure the default federation exists, check every site, print the feature baselines.

A later stage runs the federated simulation here; until then this is what `make run` does.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from shared.data.config import DataConfig, SiteConfig
from shared.data.site_check import check_site, format_report
from shared.data.synthetic.federation import MANIFEST, generate_federation
from shared.data.site import federation_sites
from simulations.baseline import format_results, run_baselines
from simulations.generate import federation_spec
from simulations.paths import CONFIG_DIR

log = logging.getLogger(__name__)


@hydra.main(version_base=None, config_path=CONFIG_DIR, config_name="baseline")
def main(cfg: DictConfig) -> None:
    root = Path(cfg.federation_dir)
    if not (root / MANIFEST).is_file():
        log.info("generating the %r federation under %s", cfg.federation.name, root)
        generate_federation(federation_spec(cfg.federation), root, overwrite=True)
    data_cfg = DataConfig.from_mapping(OmegaConf.to_container(cfg.data, resolve=True))
    for folder in federation_sites(root):
        site = SiteConfig.from_site_dir(folder)
        print(format_report(check_site(folder, site, data_cfg.preprocess[site.modality], data_cfg.vocabulary, progress=False)))
        print()
    print("feature baseline (logistic regression on band powers / heart rate + HRV, test subjects):")
    print(format_results(run_baselines(root, data_cfg, Path(cfg.paths.cache_dir))))


if __name__ == "__main__":
    main()
