"""Yardstick: a per-site logistic regression on band-power (EEG) or heart-rate/HRV (ECG) features.

`fedxalign-baseline [synthetic=default]` prints balanced test accuracy per site: what a simple
non-federated, non-private classifier reaches, so later figures have something to beat.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fedxalign.shared.data.config import DataConfig, SiteConfig
from fedxalign.shared.data.features import FEATURES
from fedxalign.shared.data.site import SiteData, federation_sites, load_federation_site
from fedxalign.configs import CONFIG_DIR

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BaselineResult:
    site: str
    modality: str
    n_train: int
    n_test: int
    balanced_accuracy: float
    chance: float


def feature_baseline(data: SiteData) -> BaselineResult:
    """Fit on the site's train+val subjects, score on its test subjects (never the same subject)."""
    feats = FEATURES[data.site.modality](data.x, data.preprocess.sfreq)
    train = data.split != "test"
    test = ~train
    present = np.unique(data.y[train])
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, class_weight="balanced"))
    model.fit(feats[train], data.y[train])
    keep = test & np.isin(data.y, present)
    score = balanced_accuracy_score(data.y[keep], model.predict(feats[keep])) if keep.any() else float("nan")
    return BaselineResult(data.site.name, data.site.modality, int(train.sum()), int(keep.sum()), float(score),
                          1.0 / max(len(np.unique(data.y[keep])), 1))


def run_baselines(root: Path, data_cfg: DataConfig, cache_dir: Path | None) -> list[BaselineResult]:
    results = []
    for folder in federation_sites(root):
        site = SiteConfig.from_site_dir(folder)
        data = load_federation_site(folder, site, data_cfg, cache_dir, progress=True)
        results.append(feature_baseline(data))
    return results


def format_results(results: list[BaselineResult]) -> str:
    lines = [f"{'site':20s} {'modality':8s} {'train':>6s} {'test':>6s} {'bal.acc':>8s} {'chance':>7s}"]
    for r in results:
        lines.append(f"{r.site:20s} {r.modality:8s} {r.n_train:6d} {r.n_test:6d} {r.balanced_accuracy:8.3f} {r.chance:7.3f}")
    return "\n".join(lines)


@hydra.main(version_base=None, config_path=CONFIG_DIR, config_name="baseline")
def main(cfg: DictConfig) -> None:
    data_cfg = DataConfig.from_mapping(OmegaConf.to_container(cfg.data, resolve=True))
    root = Path(cfg.federation_dir)
    if not root.is_dir():
        raise SystemExit(f"{root} does not exist: generate it first (fedxalign-generate synthetic={cfg.synthetic.name})")
    print(format_results(run_baselines(root, data_cfg, Path(cfg.paths.cache_dir))))


if __name__ == "__main__":
    main()
