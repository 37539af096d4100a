"""CBraMod-style criss-cross transformer encoder (Wang et al., ICLR 2025), Opacus-safe.

A window arrives as (batch, channels, patches, patch samples). Each 1-s patch gets a time-
and a frequency-domain embedding; every block splits its heads between spatial attention
(across channels at one patch) and temporal attention (across patches of one channel), in
parallel. Only Linear, LayerNorm and Embedding hold parameters (no BatchNorm, no
nn.MultiheadAttention), so Opacus computes per-sample gradients for all of them. Attention
over channels has no channel-identity embedding, so any channel count 1..N works and
same-modality sites with different montages can average weights.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from shared.errors import ConfigError, check_option
from shared.schema import build


@dataclass(frozen=True)
class EncoderConfig:
    """Sizes of an encoder; `embed_dim` is the shared latent space, `specific_dim` > 0 adds a MISA-style private part."""

    modality: str = "eeg"
    patch_samples: int = 100
    max_patches: int = 64
    d_model: int = 32
    n_layers: int = 2
    n_heads: int = 4
    mlp_ratio: int = 2
    dropout: float = 0.1
    embed_dim: int = 32
    specific_dim: int = 0
    global_bins: int = 0  # > 0: add a whole-window log-spectrum token (this many bins up to global_max_hz)
    global_max_hz: float = 25.0
    sfreq: float = 100.0

    def __post_init__(self) -> None:
        check_option("modality", self.modality, ("eeg", "ecg"))
        if self.n_heads % 2 or (self.d_model // 2) % (self.n_heads // 2):
            raise ConfigError(f"{self.n_heads=} must be even and split d_model/2={self.d_model // 2} evenly between spatial and temporal heads")
        if self.specific_dim not in (0, self.embed_dim):
            raise ConfigError(f"{self.specific_dim=} must be 0 or embed_dim={self.embed_dim}: the MISA orthogonality is taken per "
                              "sample (inv_i . spec_i), which DP-SGD's per-sample clipping needs, and that needs equal sizes")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> EncoderConfig:
        return build(cls, values, "model")


class CrissCrossAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.h = n_heads // 2
        self.half = d_model // 2
        self.spatial_qkv = nn.Linear(d_model, 3 * self.half)
        self.temporal_qkv = nn.Linear(d_model, 3 * self.half)
        self.out = nn.Linear(d_model, d_model)
        self.dropout = dropout

    def _attend(self, qkv: torch.Tensor) -> torch.Tensor:
        # qkv: (sequences, length, 3 * half) -> (sequences, length, half)
        s, n, _ = qkv.shape
        q, k, v = qkv.reshape(s, n, 3, self.h, self.half // self.h).permute(2, 0, 3, 1, 4)
        o = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return o.transpose(1, 2).reshape(s, n, self.half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, p, d = x.shape
        sp = self.spatial_qkv(x).transpose(1, 2).reshape(b * p, c, -1)
        sp = self._attend(sp).reshape(b, p, c, self.half).transpose(1, 2)
        tp = self.temporal_qkv(x).reshape(b * c, p, -1)
        tp = self._attend(tp).reshape(b, c, p, self.half)
        return self.out(torch.cat([sp, tp], dim=-1))


class CrissCrossBlock(nn.Module):
    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.d_model)
        self.attn = CrissCrossAttention(cfg.d_model, cfg.n_heads, cfg.dropout)
        self.norm2 = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.d_model, cfg.mlp_ratio * cfg.d_model), nn.GELU(), nn.Dropout(cfg.dropout),
            nn.Linear(cfg.mlp_ratio * cfg.d_model, cfg.d_model),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class CrissCrossEncoder(nn.Module):
    """Window -> L2-normalised embedding in the shared space (and optionally a specific part).

    Contract shared by the EEG and ECG encoders: `config`, `n_outputs`, `forward(x,
    return_features=False)`, `get_config()`, `from_config()`, `reset_head()`.
    """

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.config = cfg
        n_freq = cfg.patch_samples // 2 + 1
        self.time_embed = nn.Linear(cfg.patch_samples, cfg.d_model)
        self.freq_embed = nn.Linear(n_freq, cfg.d_model)
        self.pos_embed = nn.Embedding(cfg.max_patches, cfg.d_model)
        self.blocks = nn.ModuleList([CrissCrossBlock(cfg) for _ in range(cfg.n_layers)])
        self.norm = nn.LayerNorm(cfg.d_model)
        self.global_embed = nn.Linear(cfg.global_bins, cfg.d_model) if cfg.global_bins > 0 else None
        self.head = nn.Linear(cfg.d_model, cfg.embed_dim)
        self.specific_head = nn.Linear(cfg.d_model, cfg.specific_dim) if cfg.specific_dim > 0 else None

    @property
    def n_outputs(self) -> int:
        return self.config.embed_dim

    def get_config(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)

    @classmethod
    def from_config(cls, values: Mapping[str, Any]) -> CrissCrossEncoder:
        return cls(EncoderConfig.from_mapping(values))

    def reset_head(self) -> None:
        self.head.reset_parameters()
        if self.specific_head is not None:
            self.specific_head.reset_parameters()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, channels, patches, samples) -> pooled (batch, d_model)."""
        b, c, p, s = x.shape
        if s != self.config.patch_samples or p > self.config.max_patches:
            raise ConfigError(f"input has {p} patches of {s} samples; the encoder takes <= {self.config.max_patches} of {self.config.patch_samples}")
        spec = torch.log1p(torch.fft.rfft(x, dim=-1).abs())
        pos = self.pos_embed(torch.arange(p, device=x.device).expand(b, p))  # batch-first for Opacus
        h = self.time_embed(x) + self.freq_embed(spec) + pos.unsqueeze(1)
        for block in self.blocks:
            h = block(h)
        pooled = self.norm(h).mean(dim=(1, 2))
        if self.global_embed is not None:
            pooled = pooled + self.global_embed(self._window_spectrum(x))
        return pooled

    def _window_spectrum(self, x: torch.Tensor) -> torch.Tensor:
        """Log power of the whole window, averaged over channels and pooled into `global_bins` bands.

        1-s patches resolve 1 Hz at best; heart rate and its variability, or the sigma band, need
        the finer resolution of the whole 30-s window.
        """
        b, c, p, s = x.shape
        spec = torch.fft.rfft(x.reshape(b, c, p * s), dim=-1).abs().pow(2)
        freqs = torch.fft.rfftfreq(p * s, d=1.0 / self.config.sfreq)
        keep = spec[..., freqs <= self.config.global_max_hz]
        n = keep.shape[-1] - keep.shape[-1] % self.config.global_bins
        bands = keep[..., :n].reshape(b, c, self.config.global_bins, -1).mean(-1)
        return torch.log1p(bands).mean(1)

    def forward(self, x: torch.Tensor, return_features: bool = False):
        """Returns z (batch, embed_dim), unit norm; with `return_features`, (z, specific or None, pooled features)."""
        f = self.features(x)
        z = F.normalize(self.head(f), dim=-1)
        if not return_features:
            return z
        spec = F.normalize(self.specific_head(f), dim=-1) if self.specific_head is not None else None
        return z, spec, f


ENCODERS: dict[str, type[CrissCrossEncoder]] = {"eeg": CrissCrossEncoder, "ecg": CrissCrossEncoder}


def build_encoder(cfg: EncoderConfig, seed: int | None = None) -> CrissCrossEncoder:
    """A freshly initialised encoder for `cfg.modality`; `seed` makes the initial weights reproducible."""
    if seed is not None:
        gen_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
    try:
        return ENCODERS[cfg.modality](cfg)
    finally:
        if seed is not None:
            torch.random.set_rng_state(gen_state)


@functools.lru_cache(maxsize=16)
def weight_shapes(cfg: EncoderConfig) -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes of the encoder `cfg` builds: what a shared-weights message must hold (cached; do not mutate)."""
    return {k: tuple(v.shape) for k, v in build_encoder(cfg, seed=0).state_dict().items()}
