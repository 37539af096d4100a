import pytest
import torch
from opacus.validators import ModuleValidator

from shared.errors import ConfigError
from shared.models.encoder import CrissCrossEncoder, EncoderConfig, build_encoder


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
    assert z.shape == (2, 32) and spec.shape == (2, 32) and f.shape == (2, 32)


def test_channel_order_does_not_matter():
    """No channel-identity embedding: permuting channels leaves the embedding unchanged."""
    model = build_encoder(EncoderConfig(), seed=0).eval()
    x = torch.randn(2, 3, 30, 100)
    assert torch.allclose(model(x), model(x[:, [2, 0, 1]]), atol=1e-5)


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
    assert model._window_spectrum(x).shape == (3, 50)
