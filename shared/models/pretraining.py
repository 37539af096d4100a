"""Self-supervised pretraining by dual masking: hide whole channels/leads and spans of time, reconstruct them.

CBraMod pretrains by regressing masked patches; the ECG variant of the fusion paper masks along
both axes, so the model must learn how leads relate (a hidden lead from the others) and how a
signal unfolds (a hidden span from its context). The loss of one window depends on that window
alone, so the same objective runs under DP-SGD at a site (federated pretraining) as it runs on
a public corpus (no privacy cost).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from fedxalign.shared.device import pick_device
from fedxalign.shared.errors import ConfigError
from fedxalign.shared.models.encoder import SCALING_BUFFERS, TASK_PARTS, CrissCrossEncoder, EncoderConfig, load_cbramod_weights
from fedxalign.shared.schema import build

CHECKPOINT_FORMAT = "fedxalign-pretrained-v2"  # v2: with the whole-window tokens' input scaling
EARLIER_FORMATS = ("fedxalign-pretrained-v1",)  # loaded with the tokens unscaled


@dataclass(frozen=True)
class PretrainConfig:
    """Masked reconstruction on unlabelled windows."""

    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    mask_ratio: float = 0.5  # share of patches hidden, about half as in CBraMod
    span_patches: int = 5  # time masks hide runs of this many patches
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if not 0 < self.mask_ratio < 1:
            raise ConfigError(f"{self.mask_ratio=} must lie in (0, 1)")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> PretrainConfig:
        return build(cls, values, "pretraining")


def dual_mask(batch: int, channels: int, patches: int, ratio: float, span: int, generator: torch.Generator | None = None,
              device: str | torch.device = "cpu") -> torch.Tensor:
    """Boolean (batch, channels, patches): whole channels and spans of patches hidden, about `ratio` of the grid in all.

    Channels and time spans are drawn independently at the rate r with 1 - (1 - r)^2 = ratio, so
    their union hides about `ratio`; a one-channel window is masked along time only. Every window
    keeps at least one visible and one hidden patch.
    """
    per_axis = 1 - math.sqrt(1 - ratio) if channels > 1 else ratio
    ch = torch.rand(batch, channels, 1, generator=generator) < per_axis if channels > 1 else torch.zeros(batch, 1, 1, dtype=torch.bool)
    n_spans = -(-patches // span)
    spans = (torch.rand(batch, 1, n_spans, generator=generator) < per_axis).repeat_interleave(span, dim=2)[..., :patches]
    mask = ch | spans
    flat = mask.reshape(batch, -1)
    none = ~flat.any(1)
    flat[none, torch.randint(flat.shape[1], (int(none.sum()),), generator=generator)] = True
    full = flat.all(1)
    flat[full, torch.randint(flat.shape[1], (int(full.sum()),), generator=generator)] = False
    return flat.reshape(batch, channels, patches).to(device)


def reconstruction_loss(model: torch.nn.Module, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MSE on the hidden patches, averaged per window first (so each window's loss is its own) and then over the batch."""
    pred = model.reconstruct(x, mask) if hasattr(model, "reconstruct") else model._module.reconstruct(x, mask)
    err = (pred - x).pow(2).mean(-1) * mask
    return (err.sum((1, 2)) / mask.sum((1, 2)).clamp_min(1)).mean()


def pretrain(model: CrissCrossEncoder, datasets: Sequence[torch.Tensor], cfg: PretrainConfig, desc: str = "pretraining") -> list[float]:
    """Non-private pretraining on public windows; batches are drawn per dataset (montages differ). Returns epoch losses."""
    if not datasets or not sum(len(d) for d in datasets):
        raise ConfigError("no windows to pretrain on")
    device = pick_device(cfg.device)
    gen = torch.Generator().manual_seed(cfg.seed)
    model.to(device).train()
    set_pretrainable(model)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=0.01)
    rng = np.random.default_rng(cfg.seed)
    losses = []
    for _ in tqdm(range(cfg.epochs), desc=desc, unit="epoch"):
        batches = [(i, idx) for i, d in enumerate(datasets) for idx in torch.randperm(len(d), generator=gen).split(cfg.batch_size)]
        total, n = 0.0, 0
        for k in rng.permutation(len(batches)):
            i, idx = batches[k]
            x = datasets[i][idx].to(device)
            mask = dual_mask(*x.shape[:3], cfg.mask_ratio, cfg.span_patches, gen, device)
            opt.zero_grad()
            loss = reconstruction_loss(model, x, mask)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            total, n = total + float(loss.detach()) * len(idx), n + len(idx)
        losses.append(total / n)
    model.to("cpu").eval()
    for p in model.parameters():
        p.requires_grad_(True)
    model.patch_embedding.mask_encoding.requires_grad_(False)
    return losses


def fit_token_scaling(model: CrissCrossEncoder, datasets: Sequence[torch.Tensor], batch_size: int = 512) -> dict[str, int]:
    """Set the whole-window tokens' input scaling to the mean and spread of `datasets` (public windows only).

    Returns how many dimensions each scaling has. A dimension that does not vary keeps scale 1.
    """
    tokens: dict[str, list[torch.Tensor]] = {}
    with torch.no_grad():
        for d in datasets:
            for idx in torch.arange(len(d)).split(batch_size):
                for name, v in model.whole_window_tokens(d[idx]).items():
                    tokens.setdefault(name, []).append(v.double())
    fitted = {}
    for name, parts in tokens.items():
        v = torch.cat(parts)
        std = v.std(0) if len(v) > 1 else torch.zeros(v.shape[1], dtype=v.dtype)
        scaling = getattr(model, name)
        scaling.shift.copy_(v.mean(0).to(scaling.shift.dtype))
        scaling.scale.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)).to(scaling.scale.dtype))
        fitted[name] = v.shape[1]
    return fitted


def set_pretrainable(model: CrissCrossEncoder) -> None:
    """Train everything the reconstruction uses (not the classification part); the mask value stays 0, as CBraMod's."""
    for name, p in model.named_parameters():
        p.requires_grad_(not name.startswith(TASK_PARTS) and not name.endswith("mask_encoding"))


def save_checkpoint(model: CrissCrossEncoder, path: str | Path, meta: Mapping[str, Any] | None = None) -> Path:
    from fedxalign.shared.atomic_files import replace_atomically

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": CHECKPOINT_FORMAT, "config": dataclasses.asdict(model.config), "state_dict": model.state_dict(),
               "meta": dict(meta or {})}
    replace_atomically(path, lambda tmp: torch.save(payload, tmp), suffix=".pt")
    return path


def load_pretrained(model: CrissCrossEncoder, path: str | Path) -> None:
    """Start `model` from a checkpoint: this project's pretraining output, or CBraMod's published state dict."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"pretrained checkpoint {path} does not exist (run fedxalign-pretrain, or fix model.pretrained)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is reported by name
        raise ConfigError(f"{path}: not a readable PyTorch checkpoint ({type(err).__name__}: {err})") from err
    if isinstance(payload, Mapping) and payload.get("format") in (CHECKPOINT_FORMAT, *EARLIER_FORMATS):
        saved = EncoderConfig.from_mapping(payload["config"])
        if dataclasses.replace(saved, modality=model.config.modality, pretrained=model.config.pretrained) != model.config:
            raise ConfigError(f"{path}: pretrained with model settings {saved}, this run uses {model.config}")
        missing, unexpected = model.load_state_dict(payload["state_dict"], strict=False)
        allowed = SCALING_BUFFERS if payload["format"] in EARLIER_FORMATS else ()  # v1 predates the scaling
        if unexpected or any(not k.endswith(allowed) for k in missing):
            raise ConfigError(f"{path}: {payload['format']} checkpoint does not fit this encoder (missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]})")
    elif isinstance(payload, Mapping):
        load_cbramod_weights(model, payload, str(path))
    else:
        raise ConfigError(f"{path}: holds a {type(payload).__name__}, not a state dict")


def pretrained_path(template: str, modality: str) -> Path | None:
    """`model.pretrained` names one file per modality with `{modality}` in it; empty means none."""
    return Path(template.format(modality=modality)) if template else None
