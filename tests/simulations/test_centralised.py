"""The centralised reference: early stopping on the validation subjects, the best epoch's weights kept."""

import pytest
import torch

from fedxalign.shared.data.config import SiteConfig
from fedxalign.shared.data.site import federation_sites, load_federation_site
from fedxalign.simulations.centralised import ReferenceConfig, _val_score, train_centralised
from fedxalign.simulations.settings import run_settings
from tests.conftest import compose_config


@pytest.fixture(scope="module")
def setting(tiny_federation, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    cfg = compose_config("simulate", [f"federation.federation_dir={tiny_federation}", f"paths.cache_dir={cache}",
                                      f"federation.results_dir={cache / 'out'}", "pretraining.source=none"])
    settings = run_settings(cfg)
    sites = [load_federation_site(f, SiteConfig.from_site_dir(f), settings.data, settings.federation.cache_dir)
             for f in federation_sites(tiny_federation)]
    return settings, sites


def test_training_stops_patience_epochs_after_the_best_and_keeps_the_best_epochs_weights(setting):
    settings, sites = setting
    ref = train_centralised(sites, settings, ReferenceConfig(max_epochs=40, patience=3), seed=0)
    assert ref.epochs_run == ref.best_epoch + 3 or ref.epochs_run == 40
    assert ref.best_epoch < ref.epochs_run  # it ran past its best epoch, and kept that epoch rather than the last
    val = [(d.site.modality, ds.x, ds.y.numpy()) for d in sites if (d.split == "val").any() for ds in [d.dataset("val")]]
    assert _val_score(ref.encoders, torch.from_numpy(ref.anchors), val) == pytest.approx(ref.val_balanced_accuracy)
