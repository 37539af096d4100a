"""Hydra entry point that writes a synthetic federation in real formats (EDF, BDF, WFDB)."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from fedxalign.shared.data.synthetic.federation import FederationSpec, generate_federation
from fedxalign.configs import CONFIG_DIR

log = logging.getLogger(__name__)


def federation_spec(cfg: DictConfig) -> FederationSpec:
    values = OmegaConf.to_container(cfg, resolve=True)
    values.pop("name", None)
    return FederationSpec.from_mapping(values)


@hydra.main(version_base=None, config_path=CONFIG_DIR, config_name="generate")
def main(cfg: DictConfig) -> None:
    folders = generate_federation(federation_spec(cfg.synthetic), Path(cfg.out_dir), overwrite=cfg.overwrite)
    log.info("wrote %d sites under %s", len(folders), cfg.out_dir)
    for name, folder in folders.items():
        print(f"{name:24s} {folder}")


if __name__ == "__main__":
    main()
