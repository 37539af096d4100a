"""In-process drivers for the baselines: the same site and server functions as the Flower apps, without transport.

`run_local_only`: every site trains alone against its own anchors (no server).
`run_federated`: the coordinator's `aggregate_round` over direct calls (used for per-modality
FedAvg without alignment, so the baseline differs from the main run only by the alignment).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from tqdm.auto import tqdm

from fedxalign.client.node import state_dir
from fedxalign.client.site_round import train_round
from fedxalign.server.strategy import ServerState, SiteResult, aggregate_round
from fedxalign.shared.data.site import SiteData
from fedxalign.shared.protocol import GlobalState
from fedxalign.shared.runconfig import RunSettings

log = logging.getLogger(__name__)


def run_local_only(sites: list[SiteData], settings: RunSettings, state_root: Path) -> None:
    """R rounds of local training per site, each against anchors seeded by its own name."""
    total = len(sites) * settings.federation.rounds
    with tqdm(total=total, desc="baseline local-only", unit="site-round") as bar:
        for data in sites:
            for rnd in range(1, settings.federation.rounds + 1):
                train_round(data, state_dir(state_root, data.site.name), settings.model_for(data.site.modality),
                            settings.train_for(data.site.modality), settings.privacy, GlobalState(), round_no=rnd)
                bar.update(1)


def run_federated(sites: list[SiteData], settings: RunSettings, state_root: Path, desc: str) -> ServerState:
    state = ServerState()
    fed = settings.federation
    with tqdm(total=len(sites) * fed.rounds, desc=desc, unit="site-round") as bar:
        for rnd in range(1, fed.rounds + 1):
            results = []
            for data in sites:
                m = data.site.modality
                reply = train_round(data, state_dir(state_root, data.site.name), settings.model_for(m), settings.train_for(m),
                                    settings.privacy, state.global_for(m, fed.share_weights), share_weights=fed.share_weights,
                                    round_no=rnd, anchor_key=m, objective=fed.objective(rnd))
                results.append(SiteResult(data.site.name, m, reply.arrays, reply.metrics))
                bar.update(1)
            state, _ = aggregate_round(state, results, settings)
    return state


BASELINE_STATE = "server_state.npz"


def run_baseline(kind: str, settings: RunSettings, state_root: Path, threads: int = 1) -> None:
    """One baseline in its own process (`concurrent.futures`): sites loaded from the window cache, torch on `threads`.

    The two DP baselines repeat the whole federation's training; the sites' tensors are small, so
    one process per core does far more than two threads on one process.
    """
    import torch

    from fedxalign.shared.data.config import SiteConfig
    from fedxalign.shared.data.site import federation_sites, load_federation_site

    torch.set_num_threads(threads)
    root = Path(settings.federation.federation_dir)
    sites = [load_federation_site(f, SiteConfig.from_site_dir(f), settings.data, settings.federation.cache_dir)
             for f in federation_sites(root)]
    if kind == "fedavg":
        run_federated(sites, unaligned_fedavg_settings(settings), state_root, "baseline FedAvg (no alignment)").save(
            state_root / BASELINE_STATE)
    elif kind == "local":
        run_local_only(sites, settings, state_root)
    else:
        raise ValueError(f"unknown baseline {kind!r}")


def unaligned_fedavg_settings(settings: RunSettings) -> RunSettings:
    return dataclasses.replace(settings, align=dataclasses.replace(settings.align, enabled=False),
                               federation=dataclasses.replace(settings.federation, share_weights=True))
