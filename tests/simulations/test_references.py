"""The references trained beside the federation: worker processes at a lower priority, collected, or stopped with the run."""

import multiprocessing
import os
import time

import pytest

from fedxalign.simulations.centralised import CentralisedReference, ReferenceConfig
from fedxalign.simulations.evaluate import evaluate, from_centralised
from fedxalign.simulations.references import NICE, BackgroundReferences
from fedxalign.simulations.run import load_sites
from fedxalign.simulations.settings import run_settings
from tests.conftest import compose_config


@pytest.fixture(scope="module")
def settings(tiny_federation, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return run_settings(compose_config("simulate", [f"federation.federation_dir={tiny_federation}", f"paths.cache_dir={cache}",
                                                    f"federation.results_dir={cache / 'out'}", "pretraining.source=none"]))


def _workers(before: set[int], n: int, timeout_s: float = 60.0) -> list[multiprocessing.Process]:
    end = time.time() + timeout_s
    while time.time() < end:
        new = [p for p in multiprocessing.active_children() if p.pid not in before]
        if len(new) >= n:
            return new
        time.sleep(0.05)
    raise AssertionError(f"expected {n} worker processes")


def _settles(read, expected, timeout_s: float = 60.0) -> bool:
    """A spawned worker lowers its priority once started: `read()` reaches `expected` within the timeout."""
    end = time.time() + timeout_s
    while time.time() < end:
        if read() == expected:
            return True
        time.sleep(0.05)
    return False


def test_the_centralised_reference_trains_in_a_worker_at_a_lower_priority_and_comes_back(settings, tmp_path):
    before = {p.pid for p in multiprocessing.active_children()}
    with BackgroundReferences(["central", "features"], settings, tmp_path, ReferenceConfig(max_epochs=3, patience=2)) as refs:
        assert refs.kinds == ["central"]  # the feature baseline is no background job
        (worker,) = _workers(before, 1)
        assert _settles(lambda: os.getpriority(os.PRIO_PROCESS, worker.pid), min(19, os.getpriority(os.PRIO_PROCESS, 0) + NICE))
        results = refs.wait()
    assert set(results) == {"central"}
    reference = results["central"].reference
    assert isinstance(reference, CentralisedReference)
    assert 1 <= reference.best_epoch <= reference.epochs_run <= 3
    assert set(reference.encoders) == {"eeg", "ecg"}
    # scored in the worker, on the model it returns: the same row as scoring it here
    sites = load_sites(settings.federation.federation_dir, settings, progress=False)
    here = evaluate(from_centralised(sites, reference.encoders, reference.anchors), len(settings.data.vocabulary))
    assert [e.site for e in results["central"].embeddings] == [d.site.name for d in sites]
    assert results["central"].scores["probe_site"] == here["probe_site"]
    assert results["central"].scores["eeg_to_ecg"] == here["eeg_to_ecg"]
    assert not [p for p in multiprocessing.active_children() if p.pid not in before]


def test_a_run_that_fails_stops_the_reference_workers(settings, tmp_path):
    before = {p.pid for p in multiprocessing.active_children()}
    with pytest.raises(RuntimeError, match="the federation failed"):
        with BackgroundReferences(["local", "central"], settings, tmp_path, ReferenceConfig(max_epochs=150, patience=150)):
            workers = _workers(before, 2)
            raise RuntimeError("the federation failed")
    assert all(not w.is_alive() for w in workers)
    assert not [p for p in multiprocessing.active_children() if p.pid not in before]
