"""The references (local-only, FedAvg without alignment, the converged centralised model), trained beside the federation.

They need nothing from the federation's run, so they start with it, one worker process each at a
lower CPU priority (nice 10): Flower's rounds leave cores idle (its start-up, each round's wait for
the slowest site, the server's aggregation) and the references fill them; when the federation
competes for a core, the scheduler gives them about a tenth of its share. Run after the federation
instead, they added their whole time to `make run`'s (343-400 s in all, against 227-232 s).
"""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

from fedxalign.shared.runconfig import RunSettings
from fedxalign.simulations.centralised import CentralisedReference, ReferenceConfig

NICE = 10
DP_KINDS = ("fedavg", "local")


def _lower_priority() -> None:
    os.nice(NICE)


def _dp_baseline(kind: str, settings: RunSettings, state_root: Path) -> tuple[str, float]:
    from fedxalign.simulations.inprocess import run_baseline

    t0 = time.time()
    run_baseline(kind, settings, state_root, threads=1, progress=False)
    return kind, time.time() - t0


def _centralised(settings: RunSettings, cfg: ReferenceConfig) -> tuple[str, float, CentralisedReference]:
    import torch

    from fedxalign.simulations.centralised import train_centralised
    from fedxalign.simulations.run import load_sites

    torch.set_num_threads(1)
    t0 = time.time()
    sites = load_sites(Path(settings.federation.federation_dir), settings, progress=False)
    ref = train_centralised(sites, settings, cfg, seed=settings.train.seed, progress=False)
    return "central", time.time() - t0, ref


class BackgroundReferences:
    """`with BackgroundReferences(...) as refs:` starts the references; `refs.wait()` collects them (and re-raises a
    failed one's error); leaving the block by an error stops the workers, by PID, so none outlives the run."""

    LABELS = {"fedavg": "FedAvg (no alignment)", "local": "local only", "central": "centralised reference"}

    def __init__(self, kinds: list[str], settings: RunSettings, baselines_dir: Path, reference: ReferenceConfig) -> None:
        self.kinds = [k for k in (*DP_KINDS, "central") if k in kinds]
        self.settings, self.baselines_dir, self.reference = settings, baselines_dir, reference
        self._pool = None
        self._jobs: list = []

    def __enter__(self) -> BackgroundReferences:
        if not self.kinds:
            return self
        self._pool = multiprocessing.get_context("spawn").Pool(len(self.kinds), initializer=_lower_priority)
        for kind in self.kinds:
            if kind == "central":
                self._jobs.append(self._pool.apply_async(_centralised, (self.settings, self.reference)))
            else:
                self._jobs.append(self._pool.apply_async(_dp_baseline, (kind, self.settings, self.baselines_dir / kind)))
        return self

    def wait(self) -> CentralisedReference | None:
        """Block until every reference is done; print each one's time; the centralised model, if it was asked for."""
        reference = None
        for job in self._jobs:
            kind, wall, *rest = job.get()  # a failed reference fails the run, with its own traceback
            print(f"reference {self.LABELS[kind]} done ({wall:.0f} s, trained beside the federation)", flush=True)
            reference = rest[0] if rest else reference
        if self._pool is not None:
            self._pool.close()
            self._pool.join()
            self._pool = None
        return reference

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._pool is not None:
            self._pool.terminate()  # SIGTERM to each worker's PID; only reached when the run failed before wait()
            self._pool.join()
            self._pool = None
