"""The centralised reference's cache: read back only for the same code, settings and train/val windows."""

import dataclasses

import numpy as np
import torch

from fedxalign.client.training import embed
from fedxalign.simulations import reference_cache
from fedxalign.simulations.centralised import ReferenceConfig
from fedxalign.simulations.reference_cache import cached_centralised, reference_key

CFG = ReferenceConfig(max_epochs=3, patience=2)


def _no_training(*args, **kwargs):
    raise AssertionError("trained although the cache holds this reference")


def test_the_same_inputs_read_the_reference_back_without_training(setting, tmp_path, monkeypatch):
    settings, sites = setting
    trained, cached = cached_centralised(sites, settings, CFG, 0, tmp_path, progress=False)
    assert not cached and len(list((tmp_path / "reference").glob("*.pt"))) == 1
    monkeypatch.setattr(reference_cache, "train_centralised", _no_training)
    again, cached = cached_centralised(sites, settings, CFG, 0, tmp_path, progress=False)
    assert cached
    assert (again.best_epoch, again.epochs_run, again.val_balanced_accuracy, again.final_lr) == (
        trained.best_epoch, trained.epochs_run, trained.val_balanced_accuracy, trained.final_lr)
    assert np.array_equal(again.anchors, trained.anchors)
    x = sites[0].dataset("test").x
    m = sites[0].site.modality
    assert np.array_equal(embed(again.encoders[m], x), embed(trained.encoders[m], x))


def test_the_key_follows_what_the_training_reads_and_nothing_else(setting):
    settings, sites = setting
    key = reference_key(sites, settings, CFG, 0)
    changed_window = [dataclasses.replace(sites[0], x=sites[0].x.copy()), *sites[1:]]
    changed_window[0].x[np.flatnonzero(sites[0].split == "train")[0], 0, 0] += 1.0
    assert reference_key(changed_window, settings, CFG, 0) != key
    clip = dataclasses.replace(settings, privacy=dataclasses.replace(settings.privacy, max_grad_norm=0.5))
    assert reference_key(sites, clip, CFG, 0) != key
    assert reference_key(sites, settings, dataclasses.replace(CFG, patience=3), 0) != key
    assert reference_key(sites, settings, CFG, 1) != key
    assert reference_key(sites, settings, CFG, 0, code=lambda: "edited code") != key
    assert reference_key(sites, settings, dataclasses.replace(CFG, batch_size=7), 0) != key
    # what it does not read: the federation's rounds, the privacy budget, the sites' DP batch, the test subjects' windows,
    # the cache switch
    rounds = dataclasses.replace(settings, federation=dataclasses.replace(settings.federation, rounds=9),
                                 privacy=dataclasses.replace(settings.privacy, epsilon=1.0),
                                 train=dataclasses.replace(settings.train, batch_size=7))
    assert reference_key(sites, rounds, dataclasses.replace(CFG, cache=False), 0) == key
    changed_test = [dataclasses.replace(sites[0], x=sites[0].x.copy()), *sites[1:]]
    changed_test[0].x[np.flatnonzero(sites[0].split == "test")[0], 0, 0] += 1.0
    assert reference_key(changed_test, settings, CFG, 0) == key


def test_with_the_cache_off_or_a_damaged_file_it_trains(setting, tmp_path):
    settings, sites = setting
    _, cached = cached_centralised(sites, settings, dataclasses.replace(CFG, cache=False), 0, tmp_path, progress=False)
    assert not cached and not (tmp_path / "reference").exists()
    cached_centralised(sites, settings, CFG, 0, tmp_path, progress=False)
    (path,) = (tmp_path / "reference").glob("*.pt")
    path.write_bytes(b"not a checkpoint")
    ref, cached = cached_centralised(sites, settings, CFG, 0, tmp_path, progress=False)
    assert not cached and torch.load(path, weights_only=True)["best_epoch"] == ref.best_epoch  # trained and written again
