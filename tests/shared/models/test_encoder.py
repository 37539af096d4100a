import numpy as np
import pytest
import torch
from opacus.validators import ModuleValidator

from fedxalign.shared.errors import ConfigError
from fedxalign.shared.models.encoder import CrissCrossEncoder, EncoderConfig, build_encoder


@pytest.mark.parametrize("n_chans", [1, 2, 3, 7])
def test_any_channel_count_gives_unit_embeddings(n_chans):
    model = build_encoder(EncoderConfig(embed_dim=16), seed=0).eval()
    z = model(torch.randn(4, n_chans, 30, 100))
    assert z.shape == (4, 16)
    assert torch.allclose(z.norm(dim=-1), torch.ones(4), atol=1e-5)


def test_opacus_validates_the_model():
    assert ModuleValidator.validate(build_encoder(EncoderConfig(specific_dim=32), seed=0), strict=False) == []


def test_config_round_trip_and_seeded_init():
    a = build_encoder(EncoderConfig(modality="ecg", d_model=16, n_heads=2), seed=3)
    b = CrissCrossEncoder.from_config(a.get_config())
    assert b.config == a.config
    c = build_encoder(EncoderConfig(modality="ecg", d_model=16, n_heads=2), seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), c.state_dict().values()))


def test_specific_part_and_features():
    model = build_encoder(EncoderConfig(specific_dim=32), seed=0).eval()
    z, spec, f = model(torch.randn(2, 2, 30, 100), return_features=True)
    assert z.shape == (2, 32) and spec.shape == (2, 32) and f.shape == (2, model.config.d_model)


def test_span_embeddings_share_the_head_and_average_the_channels_over_time():
    model = build_encoder(EncoderConfig(specific_dim=32), seed=0).eval()
    x = torch.randn(2, 3, 30, 100)
    z, spec, f, spans = model(x, return_features=True, segments=6)
    z0, spec0, f0 = model(x, return_features=True)
    torch.testing.assert_close(z, z0)
    torch.testing.assert_close(f, f0)
    assert spans.shape == (2, 6, 32)
    torch.testing.assert_close(spans.norm(dim=-1), torch.ones(2, 6))
    normed = model.pool_norm(model.tokens(x))
    first = normed[:, :, :5].mean(dim=(1, 2))  # span 0 of 6 = patches 0-4, every channel
    torch.testing.assert_close(spans[:, 0], torch.nn.functional.normalize(model.head(first), dim=-1))
    with pytest.raises(ConfigError, match="31 time spans"):
        model(x, return_features=True, segments=31)


def test_bad_sizes_are_refused():
    with pytest.raises(ConfigError, match="n_heads"):
        EncoderConfig(n_heads=3)
    model = build_encoder(EncoderConfig(), seed=0)
    with pytest.raises(ConfigError, match="patches of 50 samples"):
        model(torch.randn(1, 1, 30, 50))


def test_whole_window_spectrum_token():
    model = build_encoder(EncoderConfig(global_bins=50, sfreq=100.0), seed=0)
    assert ModuleValidator.validate(model, strict=False) == []
    model.eval()
    x = torch.randn(3, 2, 30, 100)
    assert model(x).shape == (3, 32)
    spectrum = model._window_spectrum(x)
    assert spectrum.shape == (3, 50)
    # its shape only: a site's gain (or a louder window) moves no value, and each window's bins centre on 0
    torch.testing.assert_close(model._window_spectrum(7.0 * x), spectrum, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(spectrum.mean(-1), torch.zeros(3), atol=1e-5, rtol=0)


def test_the_rhythm_token_reads_the_hrv_of_the_beat_channels():
    """Mean RR, SDNN, RMSSD and pNN50 of a known beat train, as the feature baseline would compute them."""
    from fedxalign.shared.data.beats import DRR_SCALE_S, RR_CENTRE_S, RR_SCALE_S, beat_channels
    from fedxalign.shared.models.encoder import RHYTHM_STATS, window_rhythm

    fs = 100.0
    rr_s = np.tile([0.8, 0.9, 0.86, 1.0], 12)  # successive differences 100, 40, 140, 200 ms: half of them over 50 ms
    peaks = np.round(np.cumsum(np.r_[0.2, rr_s]) * fs).astype(int)
    beats = torch.from_numpy(beat_channels(peaks, fs, 3000, fs)).reshape(1, 2, 30, 100)
    stats = dict(zip(RHYTHM_STATS, window_rhythm(beats)[0].tolist()))
    step = beats[0, 0].flatten().numpy() * RR_SCALE_S + RR_CENTRE_S  # the RR each sample falls in, in seconds
    assert stats["mean RR"] * RR_SCALE_S + RR_CENTRE_S == pytest.approx(step.mean(), abs=1e-5)
    assert stats["SDNN"] * RR_SCALE_S == pytest.approx(step.std(ddof=1), abs=1e-5)
    assert 0.85 < stats["mean RR"] * RR_SCALE_S + RR_CENTRE_S < 0.92 and 0.05 < stats["SDNN"] * RR_SCALE_S < 0.08
    assert stats["RMSSD"] * DRR_SCALE_S == pytest.approx(np.sqrt(np.mean(np.diff(rr_s) ** 2)), rel=0.25)
    assert 0.3 < stats["pNN50"] < 0.95 and stats["RR range"] * RR_SCALE_S == pytest.approx(0.2, abs=1e-5)
    flat = window_rhythm(torch.zeros(1, 2, 30, 100))[0]  # no beats found: the neutral channels give a neutral token
    assert torch.count_nonzero(flat) == 0


def test_only_an_encoder_fed_beat_channels_gets_the_rhythm_token():
    assert build_encoder(EncoderConfig(modality="eeg"), seed=0).rhythm_embed is None
    assert build_encoder(EncoderConfig(modality="ecg", derived_channels=2, rhythm_token=False), seed=0).rhythm_embed is None
    from fedxalign.shared.models.encoder import window_rhythm

    model = build_encoder(EncoderConfig(modality="ecg", derived_channels=2), seed=0)
    x = torch.randn(2, 3, 30, 100)  # one lead, then RR and |dRR|
    with_token = model.features(x)
    token = model.rhythm_embed(window_rhythm(x[:, 1:]))  # read from the trailing beat channels, not the lead
    model.rhythm_embed = None
    assert torch.allclose(with_token - model.features(x), token, atol=1e-6)


# The published CBraMod checkpoint's keys and shapes, as listed in ../shared/docs/sources/cbramod-checkpoint.md
# (written out here, not derived from our encoder, so that a renamed or reshaped parameter fails the test).
CBRAMOD_TOP = {
    "patch_embedding.mask_encoding": (200,),
    "patch_embedding.positional_encoding.0.weight": (200, 1, 19, 7),
    "patch_embedding.positional_encoding.0.bias": (200,),
    "patch_embedding.proj_in.0.weight": (25, 1, 1, 49), "patch_embedding.proj_in.0.bias": (25,),
    "patch_embedding.proj_in.1.weight": (25,), "patch_embedding.proj_in.1.bias": (25,),
    "patch_embedding.proj_in.3.weight": (25, 25, 1, 3), "patch_embedding.proj_in.3.bias": (25,),
    "patch_embedding.proj_in.4.weight": (25,), "patch_embedding.proj_in.4.bias": (25,),
    "patch_embedding.proj_in.6.weight": (25, 25, 1, 3), "patch_embedding.proj_in.6.bias": (25,),
    "patch_embedding.proj_in.7.weight": (25,), "patch_embedding.proj_in.7.bias": (25,),
    "patch_embedding.spectral_proj.0.weight": (200, 101), "patch_embedding.spectral_proj.0.bias": (200,),
    "proj_out.0.weight": (200, 200), "proj_out.0.bias": (200,),
}
CBRAMOD_LAYER = {
    "self_attn_s.in_proj_weight": (300, 100), "self_attn_s.in_proj_bias": (300,),
    "self_attn_s.out_proj.weight": (100, 100), "self_attn_s.out_proj.bias": (100,),
    "self_attn_t.in_proj_weight": (300, 100), "self_attn_t.in_proj_bias": (300,),
    "self_attn_t.out_proj.weight": (100, 100), "self_attn_t.out_proj.bias": (100,),
    "linear1.weight": (800, 200), "linear1.bias": (800,), "linear2.weight": (200, 800), "linear2.bias": (200,),
    "norm1.weight": (200,), "norm1.bias": (200,), "norm2.weight": (200,), "norm2.bias": (200,),
}


def published_state(seed=0):
    gen = torch.Generator().manual_seed(seed)
    shapes = dict(CBRAMOD_TOP) | {f"encoder.layers.{i}.{k}": s for i in range(12) for k, s in CBRAMOD_LAYER.items()}
    return {k: torch.randn(s, generator=gen) for k, s in shapes.items()}


def cbramod_config():
    from hydra import compose, initialize_config_dir

    from fedxalign.configs import CONFIG_DIR

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        cfg = compose("simulate", overrides=["model=cbramod"])
    assert cfg.data.preprocess.eeg.sfreq == 200.0  # the preset brings the 200 Hz patches it needs
    values = {k: v for k, v in cfg.model.items() if k != "by_modality"}
    return EncoderConfig(**values, patch_samples=200)  # as RunSettings.model_for derives it from the 200 Hz preprocessing


def test_the_published_cbramod_weights_load_by_name():
    from fedxalign.shared.models.encoder import load_cbramod_weights

    state = published_state()
    assert len(state) == 211 and sum(v.numel() for v in state.values()) == 4_924_000  # the document's totals
    model = build_encoder(cbramod_config(), seed=0)
    left = load_cbramod_weights(model, {"module." + k: v for k, v in state.items()})
    own = model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in state.items())
    assert left and all(k.startswith(("pool_norm.", "head.")) for k in left)
    x = torch.randn(2, 3, 30, 200)
    assert model.eval()(x).shape == (2, 32)


def test_a_checkpoint_of_another_shape_or_layout_is_refused():
    from fedxalign.shared.models.encoder import load_cbramod_weights

    model = build_encoder(cbramod_config(), seed=0)
    bad = published_state()
    bad["encoder.layers.0.linear1.weight"] = torch.zeros(400, 200)
    with pytest.raises(ConfigError, match="linear1"):
        load_cbramod_weights(model, bad, "weights.pth")
    partial = published_state()
    del partial["encoder.layers.11.norm2.bias"]
    with pytest.raises(ConfigError, match="missing"):
        load_cbramod_weights(model, partial)
    with pytest.raises(ConfigError, match="does not have"):
        load_cbramod_weights(build_encoder(EncoderConfig(), seed=0), published_state())


def test_opacus_per_sample_gradients_equal_one_sample_at_a_time():
    """The sample stays the leading dimension in every parameterised op, so Opacus' per-sample gradients
    (hooks, and `_packed_attention_grad_sample` for the packed attention) equal each sample's own gradient."""
    from opacus import GradSampleModule

    from fedxalign.shared.models.encoder import set_trainable

    cfg = EncoderConfig(dropout=0.0, n_layers=2, modality="ecg", derived_channels=2)  # 2 leads + the beat channels
    model = build_encoder(cfg, seed=1)
    assert model.rhythm_embed is not None  # the rhythm token's parameters are checked too
    set_trainable(model, "all")
    model.train()  # Opacus captures activations in training mode; dropout is 0
    rng = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 30, 100, generator=rng)
    direction = torch.randn(cfg.embed_dim, generator=rng)  # the embedding has unit norm: a loss on its norm would have no gradient
    gsm = GradSampleModule(model, loss_reduction="sum")
    (gsm(x) @ direction).mul(torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    for i in range(3):
        ref = build_encoder(cfg, seed=1)
        set_trainable(ref, "all")
        (ref(x[i : i + 1]) @ direction * (i + 1)).sum().backward()
        for (name, p), (_, q) in zip(model.named_parameters(), ref.named_parameters()):
            if p.requires_grad:
                assert torch.allclose(p.grad_sample[i], q.grad, rtol=1e-4, atol=1e-6), name
                assert "in_proj" not in name or q.grad.abs().max() > 1e-3, name  # the attention's gradients are not vanishing
    gsm.remove_hooks()


@pytest.mark.parametrize("scope,expect", [("all", "encoder.layers.0.linear1.weight"), ("top", "encoder.layers.1.linear1.weight"),
                                           ("head", "head.weight")])
def test_fine_tuning_scopes(scope, expect):
    from fedxalign.shared.models.encoder import set_trainable

    model = build_encoder(EncoderConfig(n_layers=2), seed=0)
    names = set_trainable(model, scope, top_layers=1)
    assert expect in names and "head.weight" in names
    assert not any(n.startswith("proj_out.") or n.endswith("mask_encoding") for n in names)
    if scope != "all":
        assert "encoder.layers.0.linear1.weight" not in names and "patch_embedding.proj_in.0.weight" not in names
    if scope == "head":
        assert not any(n.startswith("encoder.") for n in names)


@pytest.mark.parametrize("channels", [1, 3, 25])
def test_the_cheap_positional_convolution_equals_the_full_one(channels):
    from fedxalign.shared.models.encoder import DepthwiseConv2d

    cheap = DepthwiseConv2d(8, 8, kernel_size=(19, 7), padding=(9, 3), groups=8)
    full = torch.nn.Conv2d(8, 8, kernel_size=(19, 7), padding=(9, 3), groups=8)
    full.load_state_dict(cheap.state_dict())
    x = torch.randn(2, 8, channels, 30)
    assert torch.allclose(cheap(x), full(x), atol=1e-5)


@pytest.mark.parametrize("cin,k,stride,pad,width", [(1, 49, 25, 24, 100), (1, 49, 25, 24, 200), (4, 3, 1, 1, 8)])
def test_the_row_convolution_equals_torchs(cin, k, stride, pad, width):
    from fedxalign.shared.models.encoder import RowConv2d

    fast = RowConv2d(cin, 5, kernel_size=(1, k), stride=(1, stride), padding=(0, pad))
    ref = torch.nn.Conv2d(cin, 5, kernel_size=(1, k), stride=(1, stride), padding=(0, pad))
    ref.load_state_dict(fast.state_dict())
    x = torch.randn(2, cin, 6, width)
    assert torch.allclose(fast(x), ref(x), atol=1e-5)


@pytest.mark.parametrize("cin,k,stride,pad,width", [(1, 49, 25, 24, 100), (4, 3, 1, 1, 4), (3, 5, 2, 1, 11)])
def test_the_row_convolutions_per_sample_gradients_equal_opacus_rule_for_conv2d(cin, k, stride, pad, width):
    from opacus import GradSampleModule

    from fedxalign.shared.models.encoder import RowConv2d

    fast = RowConv2d(cin, 5, kernel_size=(1, k), stride=(1, stride), padding=(0, pad))
    ref = torch.nn.Conv2d(cin, 5, kernel_size=(1, k), stride=(1, stride), padding=(0, pad))
    ref.load_state_dict(fast.state_dict())
    x = torch.randn(4, cin, 6, width, generator=torch.Generator().manual_seed(0))
    upstream = torch.randn(ref(x).shape, generator=torch.Generator().manual_seed(1))
    grads = []
    for module in (fast, ref):
        wrapped = GradSampleModule(module)
        (wrapped(x) * upstream).sum().backward()
        grads.append((module.weight.grad_sample.clone(), module.bias.grad_sample.clone()))
        wrapped._close()
    assert grads[0][0].abs().amax() > 1e-3  # a gradient to compare, not zeros
    for got, want in zip(*grads):
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-5)


def test_the_packed_attention_is_torchs_multihead_attention_by_state_dict_and_output():
    from fedxalign.shared.models.encoder import PackedAttention

    ours, ref = PackedAttention(8, 2), torch.nn.MultiheadAttention(8, 2, batch_first=True)
    assert list(ours.state_dict()) == list(ref.state_dict())  # torch's packed names, in torch's order
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(3, 4, 5, 8)  # (batch, sequences, length, dim)
    folded = x.reshape(12, 5, 8)
    assert torch.allclose(ours(x).reshape(12, 5, 8), ref(folded, folded, folded, need_weights=False)[0], atol=1e-5)
    ours2 = PackedAttention(8, 2)
    ours2.load_state_dict(ref.state_dict())  # and back, strictly
    assert torch.allclose(ours2(x), ours(x), atol=1e-6)
