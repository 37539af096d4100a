"""CBraMod's criss-cross transformer encoder (Wang et al., ICLR 2025), Opacus-safe and loadable from its weights.

A window arrives as (batch, channels, patches, patch samples). Each patch gets CBraMod's
convolutional and spectral embedding plus a convolutional positional encoding; every layer
splits its heads between spatial attention (across channels at one patch) and temporal
attention (across patches of one channel), in parallel. The published implementation folds
channels or patches into the batch dimension, which breaks Opacus' per-sample gradients; here
every parameterised op keeps the sample as the leading dimension, with the same parameter names
and shapes. Attention over channels has no channel-identity embedding, so any channel count
works and same-modality sites with different montages can average weights.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple

import torch
import torch.nn.functional as F
from opacus.grad_sample import register_grad_sampler
from torch import nn

from fedxalign.shared.data.beats import BEAT_CHANNELS, DRR_SCALE_S
from fedxalign.shared.errors import ConfigError, check_option
from fedxalign.shared.schema import build


@dataclass(frozen=True)
class EncoderConfig:
    """Sizes of an encoder; `embed_dim` is the shared latent space, `specific_dim` > 0 adds a MISA-style private part.

    Presets (configs/model/): `small` for 2-core CPUs and CI, `cbramod` for the published
    CBraMod size (d 200, 12 layers, 8 heads, feed-forward 800, 200-sample patches), whose
    weights load by name.
    """

    modality: str = "eeg"
    patch_samples: int = 100
    max_patches: int = 64
    d_model: int = 16
    n_layers: int = 1
    n_heads: int = 2
    mlp_ratio: int = 2
    dropout: float = 0.0
    norm_groups: int = 2  # GroupNorm groups of the convolutional patch embedding (CBraMod: 5 of 25 filters)
    embed_dim: int = 32
    specific_dim: int = 0
    global_bins: int = 0  # > 0: add a whole-window log-spectrum token (this many bins up to global_max_hz)
    global_max_hz: float = 25.0
    derived_channels: int = 0  # trailing input channels that are not signals (ECG beat channels): left out of the spectrum token
    rhythm_token: bool = True  # with beat channels in the input: add a whole-window heart-rhythm token (RHYTHM_STATS)
    sfreq: float = 100.0
    pretrained: str = ""  # start weights: a file per modality, '{modality}' in the name (pretraining output or CBraMod's)

    def __post_init__(self) -> None:
        check_option("modality", self.modality, ("eeg", "ecg"))
        if self.n_heads % 2 or (self.d_model // 2) % (self.n_heads // 2) or self.d_model % 2:
            raise ConfigError(f"{self.n_heads=} must be even and split d_model/2={self.d_model // 2} evenly between spatial and temporal heads")
        if self.d_model % self.conv_positions:
            raise ConfigError(f"{self.d_model=} must be a multiple of the {self.conv_positions} positions the patch convolution "
                              f"leaves of {self.patch_samples} samples")
        if self.conv_filters % self.norm_groups:
            raise ConfigError(f"{self.norm_groups=} must divide the {self.conv_filters} filters of the patch convolution")
        if self.specific_dim not in (0, self.embed_dim):
            raise ConfigError(f"{self.specific_dim=} must be 0 or embed_dim={self.embed_dim}: the MISA orthogonality is taken per "
                              "sample (inv_i . spec_i), which DP-SGD's per-sample clipping needs, and that needs equal sizes")

    @property
    def conv_positions(self) -> int:
        """Output length of CBraMod's first patch convolution (kernel 49, stride 25, padding 24)."""
        return (self.patch_samples + 2 * 24 - 49) // 25 + 1

    @property
    def conv_filters(self) -> int:
        return self.d_model // self.conv_positions

    @property
    def has_rhythm_token(self) -> bool:
        """The heart-rhythm token needs beat channels in the input as well as `rhythm_token`."""
        return self.rhythm_token and self.derived_channels > 0

    @property
    def has_window_tokens(self) -> bool:
        """Whether the encoder reads any whole-window token (spectrum or heart rhythm), whose input scaling a checkpoint carries."""
        return self.global_bins > 0 or self.has_rhythm_token

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> EncoderConfig:
        return build(cls, values, "model")


class PackedAttention(nn.Module):
    """Multi-head self-attention over dim -2 of (batch, sequences, length, dim), its state dict laid out as torch's
    nn.MultiheadAttention (packed `in_proj_weight` and `in_proj_bias`, `out_proj`), so CBraMod's weights load by name.

    The sample stays the leading dimension (nn.MultiheadAttention folds sequences into the batch,
    which breaks Opacus' per-sample gradients). The packed projection is an nn.Linear submodule
    (`in_proj`), so Opacus takes its per-sample gradient from the gradient the backward pass
    computes at its output anyway, with its own rule for nn.Linear; the state-dict hooks rename
    `in_proj.weight` and `in_proj.bias` to torch's packed names and back. A grad sampler on the
    packed parameters had to run the attention's forward and backward a second time (measured:
    the encoder's DP-SGD forward and backward 0.85 of that, small preset).
    """

    def __init__(self, dim: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.in_proj = nn.utils.skip_init(nn.Linear, dim, 3 * dim)  # initialised below, in the order the packed form drew
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj.weight)
        nn.init.zeros_(self.in_proj.bias)
        nn.init.zeros_(self.out_proj.bias)
        self.register_state_dict_post_hook(_packed_names)
        self.register_load_state_dict_pre_hook(_submodule_names)

    def attend(self, qkv: torch.Tensor) -> torch.Tensor:
        """Packed projections (..., n, 3 * dim) -> the heads' attention outputs, concatenated (..., n, dim)."""
        *lead, n, three_dim = qkv.shape
        dim = three_dim // 3
        q, k, v = qkv.reshape(*lead, n, 3, self.n_heads, dim // self.n_heads).movedim(-3, 0).transpose(-3, -2)  # (*lead, heads, n, hd)
        return F.scaled_dot_product_attention(q, k, v).transpose(-3, -2).reshape(*lead, n, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_proj(self.attend(self.in_proj(x)))


PACKED_NAMES = {"in_proj.weight": "in_proj_weight", "in_proj.bias": "in_proj_bias"}  # PackedAttention's state-dict names


def _packed_names(module: nn.Module, state: dict, prefix: str, local_metadata: Any) -> None:
    mine = [k for k in state if k.startswith(prefix)]  # this module's keys are the last written: re-inserted in order
    for k in mine:
        state[prefix + PACKED_NAMES.get(k[len(prefix):], k[len(prefix):])] = state.pop(k)


def _submodule_names(module: nn.Module, state: dict, prefix: str, *args: Any) -> None:
    for sub, packed in PACKED_NAMES.items():
        if prefix + packed in state:
            state[prefix + sub] = state.pop(prefix + packed)


class CrissCrossLayer(nn.Module):
    """Pre-norm block: the first half of the features attends across channels (same patch), the second half across
    patches (same channel), in parallel; then a GELU feed-forward. Residuals around both."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        half = cfg.d_model // 2
        self.norm1 = nn.LayerNorm(cfg.d_model)
        self.self_attn_s = PackedAttention(half, cfg.n_heads // 2)
        self.self_attn_t = PackedAttention(half, cfg.n_heads // 2)
        self.norm2 = nn.LayerNorm(cfg.d_model)
        self.linear1 = nn.Linear(cfg.d_model, cfg.mlp_ratio * cfg.d_model)
        self.linear2 = nn.Linear(cfg.mlp_ratio * cfg.d_model, cfg.d_model)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        half = h.shape[-1] // 2
        spatial = self.self_attn_s(h[..., :half].transpose(1, 2)).transpose(1, 2)  # across channels
        temporal = self.self_attn_t(h[..., half:])  # across patches
        x = x + self.dropout(torch.cat([spatial, temporal], dim=-1))
        return x + self.dropout(self.linear2(self.dropout(F.gelu(self.linear1(self.norm2(x))))))


class Layers(nn.Module):
    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList([CrissCrossLayer(cfg) for _ in range(cfg.n_layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class DepthwiseConv2d(nn.Conv2d):
    """CBraMod's positional encoding: a depthwise, stride-1, "same" Conv2d over the (channel, patch) grid, made cheap.

    With fewer channels than the kernel is tall (19), most kernel rows only ever meet padding:
    the forward uses the rows that can touch a channel, which gives the same output. Opacus'
    generic convolution rule unfolds the input into every kernel position of every feature,
    which made this one layer cost more than the rest of the encoder; its per-sample gradient
    is taken here as one grouped convolution instead. Same parameters and names as nn.Conv2d.
    """

    def used_rows(self, channels: int) -> int:
        return min(self.padding[0], channels - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows, ph = self.used_rows(x.shape[2]), self.padding[0]
        weight = self.weight[:, :, ph - rows : ph + rows + 1]
        return F.conv2d(x, weight, self.bias, padding=(rows, self.padding[1]), groups=self.groups)


@register_grad_sampler(DepthwiseConv2d)
def _depthwise_grad_sample(layer: DepthwiseConv2d, activations: list[torch.Tensor], backprops: torch.Tensor) -> dict:
    x = activations[0]
    b, c, h, w = x.shape
    rows, ph, pw = layer.used_rows(h), layer.padding[0], layer.padding[1]
    padded = F.pad(x, (pw, pw, rows, rows)).reshape(1, b * c, h + 2 * rows, w + 2 * pw)
    used = F.conv2d(padded, backprops.reshape(b * c, 1, h, w), groups=b * c)  # correlation per (sample, feature)
    grad_w = x.new_zeros(b, *layer.weight.shape)
    grad_w[:, :, :, ph - rows : ph + rows + 1] = used.reshape(b, c, 1, 2 * rows + 1, -1)
    out = {layer.weight: grad_w}
    if layer.bias is not None and layer.bias.requires_grad:
        out[layer.bias] = backprops.sum(dim=(2, 3))
    return out


class RowConv2d(nn.Conv2d):
    """A Conv2d with a (1, k) kernel (CBraMod's patch convolutions), run as one matrix product per row.

    A patch row is short (100 or 200 samples, 4 or 8 output positions), so the convolution is a
    small banded matrix from the row's (channel, sample) values to its (filter, position) outputs,
    gathered from the kernel: one product per row replaces oneDNN (slow for these shapes) and the
    unfolded copy of every kernel position, and the per-sample gradient is one batched product
    summed back onto the kernel by the gather's indices. The output is made contiguous: GroupNorm
    and GELU on a transposed view were most of the old patch stack's backward. Measured on the
    small preset, the encoder's DP-SGD forward and backward took 0.74-0.76 of the unfolding
    version's time (same process, alternating). Kept in torch's (b, channels, rows, width) layout:
    a row layout without transposes needs a hand-written GroupNorm, which was slower (1.12-1.17).
    Same parameters and names as nn.Conv2d.
    """

    def band_index(self, width: int) -> tuple[torch.Tensor, int]:
        """(out * positions, in * width) indices into the flattened kernel (numel: a zero, from padding) and the positions."""
        key = (width, self.weight.device)
        cached = self.__dict__.get("_band")
        if cached is None or cached[0] != key:
            out_c, in_c, _, k = self.weight.shape
            pad, stride = self.padding[1], self.stride[1]
            positions = (width + 2 * pad - k) // stride + 1
            kernel = (torch.arange(out_c)[:, None] * in_c + torch.arange(in_c)[None, :]) * k  # (out, in) offsets
            index = torch.full((out_c, positions, in_c, width), out_c * in_c * k, dtype=torch.long)
            for t in range(positions):
                for j in range(k):
                    sample = t * stride + j - pad
                    if 0 <= sample < width:
                        index[:, t, :, sample] = kernel + j
            cached = (key, index.reshape(out_c * positions, in_c * width).to(self.weight.device), positions)
            self.__dict__["_band"] = cached  # not a buffer: derived from the shape alone, never saved
        return cached[1], cached[2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        index, positions = self.band_index(w)
        band = torch.cat([self.weight.flatten(), self.weight.new_zeros(1)])[index]
        bias = self.bias.repeat_interleave(positions) if self.bias is not None else None
        out = F.linear(x.transpose(1, 2).reshape(b, h, c * w), band, bias)  # (b, h, out * positions)
        return out.reshape(b, h, -1, positions).transpose(1, 2).contiguous()  # contiguous: GroupNorm and GELU are slow on strides


@register_grad_sampler(RowConv2d)
def _row_conv_grad_sample(layer: RowConv2d, activations: list[torch.Tensor], backprops: torch.Tensor) -> dict:
    x = activations[0]
    b, c, h, w = x.shape
    index, _ = layer.band_index(w)
    rows = x.transpose(1, 2).reshape(b, h, c * w)
    grad_band = torch.bmm(backprops.transpose(1, 2).reshape(b, h, -1).transpose(1, 2), rows.to(backprops.dtype)).reshape(b, -1)
    n = layer.weight.numel()
    grad_w = grad_band.new_zeros(b, n + 1).scatter_add_(1, index.flatten().expand(b, -1), grad_band)
    out = {layer.weight: grad_w[:, :n].reshape(b, *layer.weight.shape)} if layer.weight.requires_grad else {}
    if layer.bias is not None and layer.bias.requires_grad:
        out[layer.bias] = backprops.sum(dim=(2, 3))
    return out


def power(spectrum: torch.Tensor) -> torch.Tensor:
    """|X|^2 of a complex spectrum as re^2 + im^2: torch's complex abs took 1.5 times the FFT's own time here, this half as long."""
    return spectrum.real.square() + spectrum.imag.square()


class WindowInputs(NamedTuple):
    """What the encoder computes from a window alone, with no parameter: each patch's amplitude
    spectrum, the whole window's spectrum shape and its rhythm statistics (width 0 where the
    encoder has no such token). Local training reads every window once per epoch, and this part
    was 12% of a DP-SGD step on one core, so the training set's is computed once per round
    (`CrissCrossEncoder.window_inputs`) and passed back in with each batch."""

    patch_spectrum: torch.Tensor  # (batch, channels, patches, patch_samples // 2 + 1)
    window_spectrum: torch.Tensor  # (batch, global_bins) or (batch, 0)
    rhythm: torch.Tensor  # (batch, len(RHYTHM_STATS)) or (batch, 0)


def patch_spectrum(x: torch.Tensor) -> torch.Tensor:
    return power(torch.fft.rfft(x, dim=-1, norm="forward")).sqrt()


class PatchEmbedding(nn.Module):
    """CBraMod's patch embedding: a 3-layer convolution over each patch's samples plus a linear map of its amplitude
    spectrum, then a depthwise convolution over the (channel, patch) grid as positional encoding."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        f, g = cfg.conv_filters, cfg.norm_groups
        self.d_model = cfg.d_model
        self.mask_encoding = nn.Parameter(torch.zeros(cfg.patch_samples), requires_grad=False)
        self.proj_in = nn.Sequential(
            RowConv2d(1, f, kernel_size=(1, 49), stride=(1, 25), padding=(0, 24)), nn.GroupNorm(g, f), nn.GELU(),
            RowConv2d(f, f, kernel_size=(1, 3), padding=(0, 1)), nn.GroupNorm(g, f), nn.GELU(),
            RowConv2d(f, f, kernel_size=(1, 3), padding=(0, 1)), nn.GroupNorm(g, f), nn.GELU(),
        )
        self.spectral_proj = nn.Sequential(nn.Linear(cfg.patch_samples // 2 + 1, cfg.d_model), nn.Dropout(cfg.dropout))
        self.positional_encoding = nn.Sequential(
            DepthwiseConv2d(cfg.d_model, cfg.d_model, kernel_size=(19, 7), padding=(9, 3), groups=cfg.d_model))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, spectrum: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, channels, patches, samples) -> (batch, channels, patches, d_model); `mask` (bool, same grid) hides patches.

        `spectrum`: the windows' `patch_spectrum`, when already computed (never with a mask: it is the unmasked one).
        """
        b, c, p, s = x.shape
        if mask is not None:
            if spectrum is not None:
                raise ValueError("a precomputed patch spectrum is the unmasked window's; a masked window needs its own")
            x = torch.where(mask.unsqueeze(-1), self.mask_encoding.expand_as(x), x)
        conv = self.proj_in(x.reshape(b, 1, c * p, s))  # (b, filters, c*p, positions)
        emb = conv.permute(0, 2, 1, 3).reshape(b, c, p, self.d_model)
        emb = emb + self.spectral_proj(patch_spectrum(x) if spectrum is None else spectrum)
        return emb + self.positional_encoding(emb.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class TokenScaling(nn.Module):
    """A fixed per-dimension standardisation of a whole-window token's input: (v - shift) / scale.

    Both tokens are computed from the window alone, but not centred: the spectrum's mean shape
    (more power at low frequencies in every window) and the rhythm statistics' typical values are
    offsets shared by every class, which the token's linear layer turns into one push of all
    pooled features, and bins of very different spread get very different shares of a DP-SGD
    step. The statistics come from the public pretraining corpus (`fit_token_scaling`), never
    from a site's private windows, so they cost no privacy and are the same at every site: a
    site-private statistic would couple each window's loss to the others' and be an unaccounted
    release. Identity until fitted. They are buffers, not parameters: shared with the weights,
    never trained.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("shift", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return (v - self.shift) / self.scale


class CrissCrossEncoder(nn.Module):
    """Window -> L2-normalised embedding in the shared space (and optionally a specific part).

    Contract shared by the EEG and ECG encoders: `config`, `n_outputs`, `forward(x,
    return_features=False)`, `get_config()`, `from_config()`, `reset_head()`. Submodules
    `patch_embedding`, `encoder.layers.N` and `proj_out` carry CBraMod's names and shapes
    (`load_cbramod_weights`); `pool_norm`, `head`, `specific_head`, `global_embed` and
    `rhythm_embed` are this project's task part, `global_scaling` and `rhythm_scaling` their
    fixed input scaling.
    """

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.config = cfg
        self.patch_embedding = PatchEmbedding(cfg)
        self.encoder = Layers(cfg)
        self.proj_out = nn.Sequential(nn.Linear(cfg.d_model, cfg.patch_samples))  # masked-patch reconstruction
        self.pool_norm = nn.LayerNorm(cfg.d_model)
        self.global_embed = nn.Linear(cfg.global_bins, cfg.d_model) if cfg.global_bins > 0 else None
        self.global_scaling = TokenScaling(cfg.global_bins) if cfg.global_bins > 0 else None
        self.rhythm_embed = nn.Linear(len(RHYTHM_STATS), cfg.d_model) if cfg.has_rhythm_token else None
        self.rhythm_scaling = TokenScaling(len(RHYTHM_STATS)) if self.rhythm_embed is not None else None
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

    def tokens(self, x: torch.Tensor, mask: torch.Tensor | None = None, spectrum: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, channels, patches, samples) -> per-patch features (batch, channels, patches, d_model)."""
        b, c, p, s = x.shape
        if s != self.config.patch_samples or p > self.config.max_patches:
            raise ConfigError(f"input has {p} patches of {s} samples; the encoder takes <= {self.config.max_patches} of {self.config.patch_samples}")
        return self.encoder(self.patch_embedding(x, mask, spectrum))

    @torch.no_grad()
    def window_inputs(self, x: torch.Tensor) -> WindowInputs:
        """The parameter-free part of `forward` for windows `x`, to pass back in as `inputs` (same values)."""
        empty = x.new_zeros(len(x), 0)
        return WindowInputs(patch_spectrum(x), self._window_spectrum(x) if self.global_embed is not None else empty,
                            self._window_rhythm(x) if self.rhythm_embed is not None else empty)

    def reconstruct(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Predicted samples of every patch (batch, channels, patches, samples) with the `mask`ed patches hidden."""
        return self.proj_out(self.tokens(x, mask))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, channels, patches, samples) -> pooled (batch, d_model)."""
        return self._pooled(self.pool_norm(self.tokens(x)), x)

    def _pooled(self, normed: torch.Tensor, x: torch.Tensor, inputs: WindowInputs | None = None) -> torch.Tensor:
        pooled = normed.mean(dim=(1, 2))
        if self.global_embed is not None:
            spectrum = self._window_spectrum(x) if inputs is None else inputs.window_spectrum
            pooled = pooled + self.global_embed(self.global_scaling(spectrum))
        if self.rhythm_embed is not None:
            rhythm = self._window_rhythm(x) if inputs is None else inputs.rhythm
            pooled = pooled + self.rhythm_embed(self.rhythm_scaling(rhythm))
        return pooled

    def whole_window_tokens(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The unscaled inputs of the whole-window tokens this encoder has, by the name of their scaling."""
        tokens = {}
        if self.global_scaling is not None:
            tokens["global_scaling"] = self._window_spectrum(x)
        if self.rhythm_scaling is not None:
            tokens["rhythm_scaling"] = self._window_rhythm(x)
        return tokens

    def _window_rhythm(self, x: torch.Tensor) -> torch.Tensor:
        return window_rhythm(x[:, x.shape[1] - self.config.derived_channels:])

    def _window_spectrum(self, x: torch.Tensor) -> torch.Tensor:
        """The shape of the whole window's spectrum: log power in `global_bins` bands (mean over channels), less its mean.

        1-s patches resolve 1 Hz at best; heart rate and its variability, or the sigma band, need
        the finer resolution of the whole 30-s window. Only the shape is kept (relative log power,
        as the band-power baseline reads it): the window's overall level is one offset shared by
        every class, and through the linear embedding it pushed all pooled features one way and
        collapsed the alignment (measured: ECG anchors at chance on two seeds of three). A site's
        gain does not change it.
        """
        if self.config.derived_channels:
            x = x[:, : x.shape[1] - self.config.derived_channels]
        b, c, p, s = x.shape
        spec = power(torch.fft.rfft(x.reshape(b, c, p * s), dim=-1))
        freqs = torch.fft.rfftfreq(p * s, d=1.0 / self.config.sfreq).to(x.device)
        keep = spec[..., freqs <= self.config.global_max_hz]
        n = keep.shape[-1] - keep.shape[-1] % self.config.global_bins
        bands = keep[..., :n].reshape(b, c, self.config.global_bins, -1).mean(-1)
        log_power = torch.log(bands + 1e-6).mean(1)
        return log_power - log_power.mean(-1, keepdim=True)

    def forward(self, x: torch.Tensor, return_features: bool = False, segments: int = 0, inputs: WindowInputs | None = None):
        """Returns z (batch, embed_dim), unit norm; with `return_features`, (z, specific or None, pooled features).

        `inputs`: `window_inputs(x)`, computed earlier (local training's once per round), else computed here.

        With `segments` > 0 it also returns each of that many equal time spans' embedding (batch,
        segments, embed_dim), unit norm, through the same head: the patch tokens averaged over
        channels and over the span (Brant-X's patch level). Spans, not single patches, so that
        encoders with different patch lengths still meet on one time grid; the whole-window tokens
        describe the window, not a span, and are left out.
        """
        normed = self.pool_norm(self.tokens(x, spectrum=None if inputs is None else inputs.patch_spectrum))
        f = self._pooled(normed, x, inputs)
        z = F.normalize(self.head(f), dim=-1)
        if not return_features:
            return z
        spec = F.normalize(self.specific_head(f), dim=-1) if self.specific_head is not None else None
        if segments <= 0:
            return z, spec, f
        if segments > normed.shape[2]:
            raise ConfigError(f"{segments} time spans asked of a window of {normed.shape[2]} patches")
        spans = F.adaptive_avg_pool1d(normed.mean(1).transpose(1, 2), segments).transpose(1, 2)
        return z, spec, f, F.normalize(self.head(spans), dim=-1)


RHYTHM_STATS = ("mean RR", "SDNN", "mean |dRR|", "RMSSD", "pNN50", "RR range")


def window_rhythm(beats: torch.Tensor) -> torch.Tensor:
    """(batch, 2, patches, samples) beat channels (RR, |dRR|) -> (batch, 6) whole-window statistics (RHYTHM_STATS).

    The HRV summaries the feature baseline reads, taken over the whole 30-s window: a 1-s patch
    holds about one beat, so neither the patch tokens nor one layer of attention over 30 of them
    recover beat-to-beat variability well (measured: SDNN hardly predictable from the embedding).
    Computed from the input alone, per window, in the beat channels' fixed scales (RR in units of
    RR_SCALE_S around RR_CENTRE_S, |dRR| in units of DRR_SCALE_S): no parameters, no other sample.
    """
    if beats.shape[1] != len(BEAT_CHANNELS):
        raise ValueError(f"the rhythm token reads the {len(BEAT_CHANNELS)} beat channels {BEAT_CHANNELS}, got {beats.shape[1]}")
    rr, drr = beats[:, 0].flatten(1), beats[:, 1].flatten(1)
    nn50 = (drr > 0.05 / DRR_SCALE_S).to(rr.dtype)  # successive intervals more than 50 ms apart
    return torch.stack([rr.mean(1), rr.std(1), drr.mean(1), drr.pow(2).mean(1).sqrt(), nn50.mean(1),
                        rr.amax(1) - rr.amin(1)], dim=1)


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


CBRAMOD_PREFIXES = ("patch_embedding.", "encoder.layers.", "proj_out.")


def load_cbramod_weights(model: CrissCrossEncoder, state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> list[str]:
    """Load CBraMod's published state dict (a plain dict of tensors) into `model`; returns the task keys left as initialised.

    Every key must be one of the encoder's CBraMod keys with the same shape: a checkpoint of another
    size or architecture is refused by name rather than half-loaded. The task part (head, pooling
    norm, spectrum token) stays as initialised; fine-tuning trains it.
    """
    state = {k.removeprefix("module."): v for k, v in state.items()}
    own = model.state_dict()
    unknown = sorted(k for k in state if k not in own)
    if unknown:
        raise ConfigError(f"{source}: {len(unknown)} key(s) this encoder does not have, e.g. {unknown[:3]}")
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}" for k in state if tuple(state[k].shape) != tuple(own[k].shape)]
    if wrong:
        raise ConfigError(f"{source}: shapes differ from this encoder's (use the cbramod preset, 200-sample patches): {wrong[:3]}")
    missing = sorted(k for k in own if k.startswith(CBRAMOD_PREFIXES) and k not in state)
    if missing:
        raise ConfigError(f"{source}: {len(missing)} CBraMod key(s) missing, e.g. {missing[:3]}")
    model.load_state_dict(state, strict=False)
    return sorted(k for k in own if k not in state)


TRAINABLE_SCOPES = ("all", "top", "head")
SCALING_BUFFERS = ("_scaling.shift", "_scaling.scale")  # the tokens' fixed input scaling (TokenScaling)
TASK_PARTS = ("pool_norm.", "head.", "specific_head.", "global_embed.", "rhythm_embed.")  # this project's part, not CBraMod's


def set_trainable(model: CrissCrossEncoder, scope: str = "all", top_layers: int = 1) -> list[str]:
    """Freeze what a fine-tuning run leaves alone; returns the names of the parameters it trains.

    `all`: everything but the reconstruction output (unused by the classification loss: Opacus
    needs a per-sample gradient for every parameter it trains). `top`: the last `top_layers`
    layers and the task part. `head`: the task part only (pooling norm, head, spectrum token),
    the fewest parameters and so the least DP noise in total, on frozen pretrained features.
    """
    check_option("trainable", scope, TRAINABLE_SCOPES)
    n = len(model.encoder.layers)
    top = {f"encoder.layers.{i}." for i in range(max(0, n - top_layers), n)}
    names = []
    for name, p in model.named_parameters():
        if name == "patch_embedding.mask_encoding" or name.startswith("proj_out."):
            train = False
        elif scope == "all":
            train = True
        else:
            train = name.startswith(TASK_PARTS) or (scope == "top" and any(name.startswith(t) for t in top))
        p.requires_grad_(train)
        if train:
            names.append(name)
    return names
