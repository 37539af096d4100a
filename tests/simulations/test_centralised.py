"""The centralised reference: early stopping on the validation subjects, the best epoch's weights kept, and the same
reference when it trains in a process of its own beside the federated runs."""

import dataclasses

import numpy as np
import pytest
import torch

from fedxalign.shared.data.config import SiteConfig
from fedxalign.shared.data.site import federation_sites, load_federation_site
from fedxalign.simulations.centralised import ReferenceConfig, _val_score, reference_job, train_centralised
from fedxalign.simulations.settings import run_settings
from tests.conftest import compose_config


@pytest.fixture(scope="module")
def setting(tiny_federation, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    cfg = compose_config("simulate", [f"federation.federation_dir={tiny_federation}", f"paths.cache_dir={cache}", f"federation.results_dir={cache / 'out'}",
                                      "pretraining.source=none"])
    settings = run_settings(cfg)
    sites = [load_federation_site(f, SiteConfig.from_site_dir(f), settings.data, settings.federation.cache_dir)
             for f in federation_sites(tiny_federation)]
    return settings, sites


def test_training_stops_patience_epochs_after_the_best_and_keeps_the_best_epochs_weights(setting):
    settings, sites = setting
    ref = train_centralised(sites, settings, ReferenceConfig(max_epochs=40, patience=3), seed=0, progress=False)
    assert ref.epochs_run == ref.best_epoch + 3 or ref.epochs_run == 40
    assert ref.best_epoch < ref.epochs_run  # it ran past its best epoch, and kept that epoch rather than the last
    val = [(d.site.modality, ds.x, ds.y.numpy()) for d in sites if (d.split == "val").any() for ds in [d.dataset("val")]]
    assert _val_score(ref.encoders, torch.from_numpy(ref.anchors), val) == pytest.approx(ref.val_balanced_accuracy)


def test_the_reference_in_its_own_process_is_the_one_trained_here(setting):
    """`make run` trains it beside the federated runs; a process of its own must not change what it learns."""
    from multiprocessing import get_context

    settings, sites = setting
    cfg = ReferenceConfig(max_epochs=4, patience=2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        here = train_centralised(sites, settings, cfg, seed=0, progress=False)
    finally:
        torch.set_num_threads(threads)
    with get_context("spawn").Pool(1) as pool:
        there = pool.apply(reference_job, (settings, cfg, 0))
    assert (there.best_epoch, there.epochs_run) == (here.best_epoch, here.epochs_run)
    np.testing.assert_allclose(there.anchors, here.anchors, atol=1e-5)
    for m, enc in here.encoders.items():
        for k, v in enc.state_dict().items():
            torch.testing.assert_close(there.encoders[m].state_dict()[k], v, atol=1e-5, rtol=1e-4)
    assert dataclasses.is_dataclass(there)
