"""The centralised reference: early stopping on the validation subjects, the best epoch's weights kept."""

import dataclasses

import numpy as np
import pytest
import torch

from fedxalign.shared.errors import ConfigError
from fedxalign.simulations.centralised import ReferenceConfig, _val_score, train_centralised, validation_windows


def test_training_stops_patience_epochs_after_the_best_and_keeps_the_best_epochs_weights(setting):
    settings, sites = setting
    ref = train_centralised(sites, settings, ReferenceConfig(max_epochs=40, patience=3), seed=0)
    assert ref.epochs_run == ref.best_epoch + 3 or ref.epochs_run == 40
    assert ref.best_epoch < ref.epochs_run  # it ran past its best epoch, and kept that epoch rather than the last
    assert _val_score(ref.encoders, torch.from_numpy(ref.anchors), validation_windows(sites)) == pytest.approx(ref.val_balanced_accuracy)


def test_the_learning_rate_falls_on_each_validation_plateau_and_stays_put_at_factor_one(setting):
    settings, sites = setting
    halved = train_centralised(sites, settings, ReferenceConfig(max_epochs=40, patience=6, lr=0.004, lr_factor=0.5, lr_patience=1), seed=0)
    assert halved.epochs_run < 40  # stopped by patience: six epochs without improvement hold at least two plateaus of two
    assert halved.final_lr <= 0.004 * 0.5 ** 2 + 1e-12
    constant = train_centralised(sites, settings, ReferenceConfig(max_epochs=10, patience=3, lr=0.004, lr_factor=1.0), seed=0)
    assert constant.final_lr == pytest.approx(0.004)


def test_the_reference_batches_by_its_own_size_not_the_sites_dp_batch(setting):
    settings, sites = setting
    cfg = ReferenceConfig(max_epochs=2, patience=2, batch_size=16)
    ref = train_centralised(sites, settings, cfg, seed=0)
    other_dp_batch = dataclasses.replace(settings, train=dataclasses.replace(settings.train, batch_size=7))
    assert np.array_equal(train_centralised(sites, other_dp_batch, cfg, seed=0).anchors, ref.anchors)
    assert not np.array_equal(train_centralised(sites, settings, dataclasses.replace(cfg, batch_size=7), seed=0).anchors, ref.anchors)


@pytest.mark.parametrize("key, value", [("batch_size", 0), ("max_epochs", 0), ("patience", -1), ("lr_patience", 2.5), ("lr", 0.0),
                                        ("lr_factor", 1.5)])
def test_a_bad_reference_setting_is_refused_by_its_name(key, value):
    with pytest.raises(ConfigError, match=f"reference.{key}="):
        ReferenceConfig.from_mapping({key: value})


def test_a_plateau_patience_of_zero_is_taken():
    assert ReferenceConfig.from_mapping({"lr_patience": 0}).lr_patience == 0  # a cut on every epoch without improvement
