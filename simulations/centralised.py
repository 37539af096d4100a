"""Centralised upper reference: all sites' training windows pooled, no privacy, trained jointly.

One encoder per modality (montages differ, so batches are drawn site by site) and one set of
learnable class anchors shared by both modalities, trained with the same prototype objective
for the same number of epochs the federation runs (rounds x local epochs).
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from client.training import make_optimizer
from shared.data.site import SiteData
from shared.losses import prototype_loss
from shared.models.encoder import CrissCrossEncoder, build_encoder
from shared.runconfig import RunSettings


def train_centralised(sites: list[SiteData], settings: RunSettings, seed: int = 0) -> tuple[dict[str, CrissCrossEncoder], np.ndarray]:
    torch.manual_seed(seed)
    modalities = sorted({d.site.modality for d in sites})
    encoders = {m: build_encoder(settings.model_for(m), seed=seed + i) for i, m in enumerate(modalities)}
    n_classes = len(sites[0].vocabulary)
    anchors = torch.nn.Parameter(torch.nn.functional.normalize(torch.randn(n_classes, settings.model.embed_dim), dim=-1))
    params = [anchors, *[p for e in encoders.values() for p in e.parameters()]]
    holder = torch.nn.ParameterList(params)
    opt = make_optimizer(holder, settings.train)
    loaders = [(d.site.modality, torch.utils.data.DataLoader(d.dataset("train"), batch_size=settings.train.batch_size, shuffle=True,
                                                             generator=torch.Generator().manual_seed(seed)))
               for d in sites if (d.split == "train").any()]
    epochs = settings.federation.rounds * settings.train.local_epochs
    rng = np.random.default_rng(seed)
    for e in encoders.values():
        e.train()
    for _ in tqdm(range(epochs), desc="baseline centralised", unit="epoch"):
        batches = [(m, b) for m, loader in loaders for b in loader]
        for k in rng.permutation(len(batches)):
            m, (x, y) = batches[k]
            opt.zero_grad()
            loss = prototype_loss(encoders[m](x), y, anchors, settings.train.tau, None, settings.train.pull_weight)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, settings.privacy.max_grad_norm)
            opt.step()
    for e in encoders.values():
        e.eval()
    return encoders, torch.nn.functional.normalize(anchors.detach(), dim=-1).numpy()
