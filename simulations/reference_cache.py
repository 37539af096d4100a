"""The converged centralised reference, trained once per code, settings and pooled windows, then read back.

The reference is non-private and seeded (its batches, initial weights and anchors come from
`train_centralised`'s seed; one CPU thread): the same inputs give the same model, bit for bit
(three default runs: best epoch 24 of 36, the same scores). Re-training it cost about 100
CPU-seconds of every `make run` and of every run of an epsilon sweep, which leaves it unchanged.
The key covers everything the training reads: the windows and labels of the train and
validation subjects in site order, the encoders' settings and pretrained start (file bytes), the
training and reference settings, the device, torch's version and the source of the package's
`shared`, `client` and `simulations` code (any edit there retrains). Test subjects are not in
the key: they are scored afresh every run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from fedxalign.shared.atomic_files import replace_atomically
from fedxalign.shared.data.config import fingerprint
from fedxalign.shared.data.site import SiteData
from fedxalign.shared.device import pick_device
from fedxalign.shared.models.encoder import build_encoder
from fedxalign.shared.models.pretraining import pretrained_path
from fedxalign.shared.runconfig import RunSettings
from fedxalign.simulations.centralised import CentralisedReference, ReferenceConfig, train_centralised

log = logging.getLogger(__name__)

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
CODE_DIRS = ("shared", "client", "simulations")
FORMAT = 2  # 2: anchors stored as a tensor, the file read weights-only


def source_digest(root: Path = PACKAGE_ROOT) -> str:
    """sha256 of the package code the reference's training runs through (file names and bytes, in order)."""
    h = hashlib.sha256()
    for path in sorted(p for d in CODE_DIRS for p in (root / d).rglob("*.py") if "__pycache__" not in p.parts):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def reference_key(sites: list[SiteData], settings: RunSettings, cfg: ReferenceConfig, seed: int,
                  code: Callable[[], str] = source_digest) -> str:
    modalities = sorted({d.site.modality for d in sites})
    # not read here: the federation's rounds, the sites' batch size (the reference has its own)
    train = dataclasses.replace(settings.train, planned_rounds=0, batch_size=0)
    h = hashlib.sha256(fingerprint(FORMAT, torch.__version__, code(), pick_device(settings.train.device).type, seed,
                                   dataclasses.replace(cfg, cache=True), train, settings.privacy.max_grad_norm, settings.data,
                                   *(settings.model_for(m) for m in modalities)).encode())  # each names its modality
    for m in modalities:
        if settings.model.pretrained:
            h.update(Path(pretrained_path(settings.model.pretrained, m)).read_bytes())
    for d in sites:
        h.update(f"{d.site.name}/{d.site.modality}".encode())
        for split in ("train", "val"):
            ds = d.dataset(split)
            h.update(np.ascontiguousarray(ds.x.numpy()).tobytes())
            h.update(np.ascontiguousarray(ds.y.numpy()).tobytes())
    return h.hexdigest()[:24]


def _save(path: Path, ref: CentralisedReference) -> None:
    payload = {"format": FORMAT, "encoders": {m: e.state_dict() for m, e in ref.encoders.items()}, "anchors": torch.from_numpy(ref.anchors),
               "best_epoch": ref.best_epoch, "epochs_run": ref.epochs_run, "val_balanced_accuracy": ref.val_balanced_accuracy,
               "final_lr": ref.final_lr}
    replace_atomically(path, lambda tmp: torch.save(payload, tmp), suffix=".pt")


def _load(path: Path, settings: RunSettings) -> CentralisedReference | None:
    try:
        payload = torch.load(path, weights_only=True)  # tensors and plain values only: a tampered file cannot run code
        encoders = {}
        for m, state in payload["encoders"].items():
            encoders[m] = build_encoder(settings.model_for(m))
            encoders[m].load_state_dict(state)
            encoders[m].eval()
        return CentralisedReference(encoders, payload["anchors"].numpy(), int(payload["best_epoch"]), int(payload["epochs_run"]),
                                    float(payload["val_balanced_accuracy"]), float(payload["final_lr"]))
    except Exception as exc:  # a damaged file costs a retraining, never the run
        log.warning("%s: unreadable cached reference (%s); training it again", path, exc)
        return None


def cached_centralised(sites: list[SiteData], settings: RunSettings, cfg: ReferenceConfig, seed: int, cache_dir: str | Path | None,
                       progress: bool = True) -> tuple[CentralisedReference, bool]:
    """The reference and whether it came from the cache; no `cache_dir` (or `cfg.cache` off) trains every time."""
    if not cache_dir or not cfg.cache:
        return train_centralised(sites, settings, cfg, seed=seed, progress=progress), False
    path = Path(cache_dir) / "reference" / f"{reference_key(sites, settings, cfg, seed)}.pt"
    if path.is_file():
        ref = _load(path, settings)
        if ref is not None:
            return ref, True
    ref = train_centralised(sites, settings, cfg, seed=seed, progress=progress)
    _save(path, ref)
    return ref, False
