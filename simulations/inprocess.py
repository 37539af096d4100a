"""In-process drivers for the baselines: the same site and server functions as the Flower apps, without transport.

`run_local_only`: every site trains alone against its own anchors (no server).
`run_federated`: the coordinator's `aggregate_round` over direct calls (used for per-modality
FedAvg without alignment, so the baseline differs from the main run only by the alignment).
A paired folder is one node in both, as in the main run (unless `federation.paired_as=two`).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from tqdm.auto import tqdm

import numpy as np

from fedxalign.client.node import state_dir
from fedxalign.client.paired_round import train_paired_round
from fedxalign.client.site_round import local_anchors, train_round
from fedxalign.server.strategy import ServerState, SiteResult, aggregate_round
from fedxalign.shared.data.paired import PairedSiteData
from fedxalign.shared.data.site import SiteData
from fedxalign.shared.protocol import MODALITIES, PAIRED, GlobalState
from fedxalign.shared.runconfig import RunSettings

log = logging.getLogger(__name__)


def _paired_round(p: PairedSiteData, settings: RunSettings, state_root: Path, globs: dict[str, GlobalState],
                  fusion: dict | None, rnd: int, share: bool):
    return train_paired_round(p, state_dir(state_root, p.name), {m: settings.model_for(m) for m in MODALITIES}, settings.train_for_paired(),
                              settings.privacy, settings.fusion, globs, fusion, share_weights=share, round_no=rnd)


def local_paired_anchors(p: PairedSiteData, settings: RunSettings) -> GlobalState:
    """A paired site alone: one space for both its modalities, anchors seeded by its own name (as a single site's)."""
    n = len(settings.data.vocabulary)
    return GlobalState(local_anchors(p.name, n, settings.model.embed_dim), np.ones(n, bool))


def run_local_only(sites: list[SiteData], settings: RunSettings, state_root: Path, paired: list[PairedSiteData] = (),
                   progress: bool = True) -> None:
    """R rounds of local training per node, each against anchors seeded by its own name; a paired site trains both
    modalities in one space, with its own sample-level term."""
    total = (len(sites) + len(paired)) * settings.federation.rounds
    with tqdm(total=total, desc="baseline local-only", unit="site-round", disable=not progress) as bar:
        for data in sites:
            for rnd in range(1, settings.federation.rounds + 1):
                train_round(data, state_dir(state_root, data.site.name), settings.model_for(data.site.modality),
                            settings.train_for(data.site.modality), settings.privacy, GlobalState(), round_no=rnd)
                bar.update(1)
        for p in paired:
            own = local_paired_anchors(p, settings)
            for rnd in range(1, settings.federation.rounds + 1):
                _paired_round(p, settings, state_root, {m: own for m in MODALITIES}, None, rnd, False)
                bar.update(1)


def run_federated(sites: list[SiteData], settings: RunSettings, state_root: Path, desc: str,
                  paired: list[PairedSiteData] = (), progress: bool = True) -> ServerState:
    state = ServerState()
    fed = settings.federation
    with tqdm(total=(len(sites) + len(paired)) * fed.rounds, desc=desc, unit="site-round", disable=not progress) as bar:
        for rnd in range(1, fed.rounds + 1):
            results = []
            for data in sites:
                m = data.site.modality
                reply = train_round(data, state_dir(state_root, data.site.name), settings.model_for(m), settings.train_for(m),
                                    settings.privacy, state.global_for(m, fed.share_weights), share_weights=fed.share_weights,
                                    round_no=rnd, anchor_key=m, objective=fed.objective(rnd))
                results.append(SiteResult(data.site.name, m, reply.arrays, reply.metrics))
                bar.update(1)
            for p in paired:
                reply = _paired_round(p, settings, state_root, {m: state.global_for(m, fed.share_weights) for m in MODALITIES},
                                      state.fusion if fed.share_weights and state.fusion else None, rnd, fed.share_weights)
                results.append(SiteResult(p.name, PAIRED, reply.arrays, reply.metrics))
                bar.update(1)
            state, _ = aggregate_round(state, results, settings)
    return state


BASELINE_STATE = "server_state.npz"


def run_baseline(kind: str, settings: RunSettings, state_root: Path, threads: int = 1, progress: bool = True) -> None:
    """One baseline in its own process (`simulations.references`): sites loaded from the window cache, torch on `threads`.

    The two DP baselines repeat the whole federation's training; the sites' tensors are small, so
    one process per core does far more than two threads on one process.
    """
    import torch

    from fedxalign.shared.data.config import SiteConfig
    from fedxalign.shared.data.paired import federation_nodes, is_paired_dir, load_paired_site
    from fedxalign.shared.data.site import load_federation_site

    torch.set_num_threads(threads)
    nodes = federation_nodes(settings.federation.federation_dir, settings.federation.paired_as == "one")
    cache = settings.federation.cache_dir
    sites = [load_federation_site(f, SiteConfig.from_site_dir(f), settings.data, cache) for f in nodes if not is_paired_dir(f)]
    paired = [load_paired_site(f, settings.data, cache) for f in nodes if is_paired_dir(f)]  # one node, as in the main run
    if kind == "fedavg":
        run_federated(sites, unaligned_fedavg_settings(settings), state_root, "baseline FedAvg (no alignment)", paired, progress).save(
            state_root / BASELINE_STATE)
    elif kind == "local":
        run_local_only(sites, settings, state_root, paired, progress)
    else:
        raise ValueError(f"unknown baseline {kind!r}")


def unaligned_fedavg_settings(settings: RunSettings) -> RunSettings:
    return dataclasses.replace(settings, align=dataclasses.replace(settings.align, enabled=False),
                               federation=dataclasses.replace(settings.federation, share_weights=True))
