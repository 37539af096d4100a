"""Fixtures shared by the simulation tests."""

import pytest

from fedxalign.simulations.run import load_sites
from fedxalign.simulations.settings import run_settings
from tests.conftest import compose_config


@pytest.fixture(scope="module")
def setting(tiny_federation, tmp_path_factory):
    """The run settings over the tiny federation (its own cache, no public pretraining) and its loaded sites."""
    cache = tmp_path_factory.mktemp("cache")
    cfg = compose_config("simulate", [f"federation.federation_dir={tiny_federation}", f"paths.cache_dir={cache}",
                                      f"federation.results_dir={cache / 'out'}", "pretraining.source=none"])
    settings = run_settings(cfg)
    return settings, load_sites(tiny_federation, settings)
