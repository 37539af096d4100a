"""The references (local-only, FedAvg without alignment, the converged centralised model), trained beside the federation.

They need nothing from the federation's run, so they start with it, one worker process each at a
lower CPU priority (nice 10): Flower's rounds leave cores idle (its start-up, each round's wait for
the slowest site, the server's aggregation) and the references fill them; when the federation
competes for a core, the scheduler gives them about a tenth of its share. Run after the federation
instead, they added their whole time to `make run`'s (343-400 s in all, against 227-232 s).

Each worker also embeds every site with its model and scores it (`evaluate.evaluate`, whose per-site
read-outs choose their C on one core, about 8 s a method): scored in the run's own process after the
last reference, the methods took one core for about a minute while the other idled.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Collection

from fedxalign.shared.runconfig import RunSettings
from fedxalign.simulations.centralised import CentralisedReference, ReferenceConfig
from fedxalign.simulations.evaluate import SiteEmbeddings

NICE = 10
DP_KINDS = ("fedavg", "local")


@dataclass
class ReferenceResult:
    """One reference, trained and scored: every site's embeddings by its model, the methods row, and the centralised model."""

    kind: str
    wall_s: float
    embeddings: list[SiteEmbeddings]
    scores: dict  # evaluate.evaluate's row
    reference: CentralisedReference | None = None
    cached: bool = False  # the centralised model was read back (simulations.reference_cache), not trained


WORKER_MODULES = ["fedxalign.simulations.references", "fedxalign.simulations.inprocess", "fedxalign.simulations.reference_cache"]


def worker_context() -> multiprocessing.context.BaseContext:
    """Workers forked from one server process that imported their modules once (spawn where there is no forkserver).

    Each spawned worker imported the run's own module afresh, 6.9 CPU-seconds before its job started
    (torch, Opacus, MNE; a forked one 0.003); the fork server imports the workers' modules once and forks them before any of
    torch's threads start. Fork from the run's process itself is not used: its torch and Ray threads
    are running by then."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(WORKER_MODULES)
    return ctx


def _lower_priority() -> None:
    os.nice(NICE)


def _sites(settings: RunSettings):
    from fedxalign.simulations.run import load_sites

    return load_sites(Path(settings.federation.federation_dir), settings, progress=False)


def _dp_baseline(kind: str, settings: RunSettings, state_root: Path, paired: Collection[str]) -> ReferenceResult:
    from fedxalign.server.strategy import ServerState
    from fedxalign.simulations.evaluate import evaluate, from_states
    from fedxalign.simulations.inprocess import BASELINE_STATE, run_baseline, unaligned_fedavg_settings

    t0 = time.time()
    run_baseline(kind, settings, state_root, threads=1, progress=False)
    sites = _sites(settings)
    if kind == "fedavg":
        embs = from_states(sites, unaligned_fedavg_settings(settings), state_root, ServerState.load(state_root / BASELINE_STATE),
                           paired=paired)
    else:
        embs = from_states(sites, settings, state_root, None, anchor_key="site", paired=paired)
    scores = evaluate(embs, len(settings.data.vocabulary))
    return ReferenceResult(kind, time.time() - t0, embs, scores)


def _centralised(settings: RunSettings, cfg: ReferenceConfig) -> ReferenceResult:
    import torch

    from fedxalign.simulations.evaluate import evaluate, from_centralised
    from fedxalign.simulations.reference_cache import cached_centralised

    torch.set_num_threads(1)
    t0 = time.time()
    sites = _sites(settings)
    ref, cached = cached_centralised(sites, settings, cfg, settings.train.seed, settings.federation.cache_dir, progress=False)
    embs = from_centralised(sites, ref.encoders, ref.anchors)
    return ReferenceResult("central", time.time() - t0, embs, evaluate(embs, len(settings.data.vocabulary)), ref, cached)


class BackgroundReferences:
    """`with BackgroundReferences(...) as refs:` starts the references; `refs.wait()` collects them (and re-raises a
    failed one's error); leaving the block by an error stops the workers, by PID, so none outlives the run.
    `paired`: the names of the paired nodes, whose halves' encoders live in the node's folder."""

    LABELS = {"fedavg": "FedAvg (no alignment)", "local": "local only", "central": "centralised reference"}

    def __init__(self, kinds: list[str], settings: RunSettings, baselines_dir: Path, reference: ReferenceConfig,
                 paired: Collection[str] = ()) -> None:
        self.kinds = [k for k in (*DP_KINDS, "central") if k in kinds]
        self.settings, self.baselines_dir, self.reference = settings, baselines_dir, reference
        self.paired = frozenset(paired)
        self._pool = None
        self._jobs: list = []

    def __enter__(self) -> BackgroundReferences:
        if not self.kinds:
            return self
        self._pool = worker_context().Pool(len(self.kinds), initializer=_lower_priority)
        for kind in self.kinds:
            if kind == "central":
                self._jobs.append(self._pool.apply_async(_centralised, (self.settings, self.reference)))
            else:
                self._jobs.append(self._pool.apply_async(_dp_baseline, (kind, self.settings, self.baselines_dir / kind, self.paired)))
        return self

    def wait(self) -> dict[str, ReferenceResult]:
        """Block until every reference is trained and scored; print each one's time; the results by kind."""
        results = {}
        for job in self._jobs:
            result = job.get()  # a failed reference fails the run, with its own traceback
            how = "read back from the cache of an earlier run with the same code, settings and windows" if result.cached else "trained"
            print(f"reference {self.LABELS[result.kind]} done ({result.wall_s:.0f} s, {how} and scored beside the federation)",
                  flush=True)
            results[result.kind] = result
        if self._pool is not None:
            self._pool.close()
            self._pool.join()
            self._pool = None
        return results

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._pool is not None:
            self._pool.terminate()  # SIGTERM to each worker's PID; only reached when the run failed before wait()
            self._pool.join()
            self._pool = None
