"""Yardstick: a per-site logistic regression on band-power (EEG) or heart-rate/HRV (ECG) features.

`fedxalign-baseline [synthetic=default]` prints balanced test accuracy per site: what a simple
non-federated, non-private classifier reaches, so later figures have something to beat.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, make_scorer
from sklearn.model_selection import GridSearchCV, LeaveOneGroupOut
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

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
    y_test: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)  # the scored test windows' truth
    pred_test: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)  # and prediction, in order


def scored_windows(y: np.ndarray, split: np.ndarray) -> np.ndarray:
    """The test windows a per-site read-out is scored on: test subjects, classes it saw in train+val."""
    fit = split != "test"
    return ~fit & np.isin(y, np.unique(y[fit]))


# the read-out's inverse regularisation strengths, chosen per fit by leave-one-subject-out cross-validation
READOUT_CS = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
MIN_SUBJECTS_TO_TUNE = 3  # each fold then fits on at least two subjects; with fewer, C = 1 (the last entry)


def linear_readout_model(c: float = READOUT_CS[-1]):
    """The read-out every linear probe in this project uses: standardised inputs, class-balanced logistic regression."""
    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000, class_weight="balanced"))


def balanced_accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    """sklearn's, without its warning when a test subject lacks a stage the read-out predicts (the stages present count);
    nan where no window was scored."""
    if len(y) == 0:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(balanced_accuracy_score(y, pred))


def fit_readout(x: np.ndarray, y: np.ndarray, subjects: np.ndarray):
    """`linear_readout_model` with C chosen by leave-one-subject-out balanced accuracy over READOUT_CS, refitted on all.

    A fixed C flatters whichever input it happens to suit: at C = 1 the 32-dimensional embeddings
    were under-regularised more than the band powers, so the comparison measured the regulariser
    as much as the representation. Folds are whole subjects, as the test split is: a window-level
    fold would score each window beside its own subject's neighbours, which rewards fitting the
    subject rather than the stage.
    """
    subjects = np.asarray(subjects).astype(str)
    with threadpool_limits(1), warnings.catch_warnings():  # one BLAS thread: at this size more only contend (5-10x slower)
        if len(np.unique(subjects)) < MIN_SUBJECTS_TO_TUNE:
            return linear_readout_model().fit(x, y)
        search = GridSearchCV(linear_readout_model(), {"logisticregression__C": list(READOUT_CS)}, cv=LeaveOneGroupOut(),
                              scoring=make_scorer(balanced_accuracy), error_score=0.0)
        warnings.simplefilter("ignore")  # a fold whose training subjects lack a stage fits without it
        return search.fit(x, y, groups=subjects).best_estimator_


def readout_predictions(features: np.ndarray, y: np.ndarray, split: np.ndarray,
                        subjects: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The per-site protocol: `fit_readout` on the train+val subjects; (truth, prediction) of the scored test windows."""
    fit, keep = split != "test", scored_windows(y, split)
    if not keep.any():
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    model = fit_readout(features[fit], y[fit], np.asarray(subjects)[fit])
    return y[keep], model.predict(features[keep])


def readout(features: np.ndarray, y: np.ndarray, split: np.ndarray, subjects: np.ndarray) -> float:
    """Balanced accuracy of `readout_predictions` on the test subjects."""
    return balanced_accuracy(*readout_predictions(features, y, split, subjects))


def feature_baseline(data: SiteData) -> BaselineResult:
    """Fit on the site's train+val subjects, score on its test subjects (never the same subject)."""
    feats = FEATURES[data.site.modality](data.x, data.preprocess.sfreq)
    truth, pred = readout_predictions(feats, data.y, data.split, data.subject)
    return BaselineResult(data.site.name, data.site.modality, int((data.split != "test").sum()), len(truth), balanced_accuracy(truth, pred),
                          1.0 / max(len(np.unique(truth)), 1), truth, pred)


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
