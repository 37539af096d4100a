import dataclasses

import pytest
import torch

from fedxalign.client.site_round import load_encoder
from fedxalign.shared.errors import ConfigError
from fedxalign.shared.models.encoder import EncoderConfig, build_encoder
from fedxalign.shared.models.pretraining import (PretrainConfig, dual_mask, fit_token_scaling, load_pretrained, pretrain,
                                                 reconstruction_loss, save_checkpoint)

CFG = EncoderConfig(dropout=0.0)


def test_dual_mask_hides_about_half_along_both_axes():
    gen = torch.Generator().manual_seed(0)
    mask = dual_mask(400, 4, 30, 0.5, 5, gen)
    assert 0.45 < mask.float().mean() < 0.55
    whole_channels = mask.all(dim=2)  # a hidden lead: every patch of it
    assert 0.15 < whole_channels.float().mean() < 0.45
    assert mask.reshape(400, -1).any(1).all() and (~mask).reshape(400, -1).any(1).all()
    one = dual_mask(400, 1, 30, 0.5, 5, gen)  # one channel: time spans only, still about half
    assert 0.4 < one.float().mean() < 0.6 and not one.all(dim=2).any()


def test_each_windows_loss_is_its_own():
    """The batch loss is the mean of per-window losses, so DP-SGD's per-sample clipping bounds each window."""
    model = build_encoder(CFG, seed=0).train()
    x = torch.randn(4, 2, 30, 100)
    mask = dual_mask(4, 2, 30, 0.5, 5, torch.Generator().manual_seed(1))
    batch = reconstruction_loss(model, x, mask)
    single = torch.stack([reconstruction_loss(model, x[i : i + 1], mask[i : i + 1]) for i in range(4)]).mean()
    assert torch.allclose(batch, single, atol=1e-6)
    x2 = x.clone()
    x2[3] = 100.0  # another window changes; window 0's own loss does not
    assert torch.allclose(reconstruction_loss(model, x2[:1], mask[:1]), reconstruction_loss(model, x[:1], mask[:1]))


def test_pretraining_learns_to_fill_in_masked_structure():
    # a 5 Hz rhythm of random amplitude and phase per window, the same in both channels: a hidden
    # patch is predictable from the other channel or from its neighbours in time
    t = torch.arange(3000) / 100.0
    gen = torch.Generator().manual_seed(0)
    amp = 0.5 + torch.rand(64, 1, 1, generator=gen)
    phase = torch.rand(64, 1, 1, generator=gen) * 6.28
    x = (amp * torch.sin(2 * torch.pi * 5 * t + phase)).expand(64, 2, 3000).reshape(64, 2, 30, 100).contiguous()
    model = build_encoder(CFG, seed=0)
    losses = pretrain(model, [x], PretrainConfig(epochs=15, batch_size=16, lr=3e-3, device="cpu"))
    assert losses[-1] < 0.5 * losses[0]
    assert all(p.requires_grad for n, p in model.named_parameters() if not n.endswith("mask_encoding"))


def test_checkpoint_round_trip_and_sites_start_from_it(tmp_path):
    model = build_encoder(CFG, seed=3)
    path = save_checkpoint(model, tmp_path / "eeg.pt", {"note": "test"})
    fresh = build_encoder(CFG, seed=4)
    load_pretrained(fresh, path)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values()))
    cfg = dataclasses.replace(CFG, pretrained=str(tmp_path / "{modality}.pt"))
    site = load_encoder(tmp_path / "site_state", cfg, "site_a", None)  # no own encoder yet: the pretrained start
    assert torch.equal(site.state_dict()["encoder.layers.0.linear1.weight"], model.state_dict()["encoder.layers.0.linear1.weight"])


def test_a_checkpoint_of_other_settings_or_a_missing_file_is_refused(tmp_path):
    path = save_checkpoint(build_encoder(CFG, seed=0), tmp_path / "eeg.pt")
    with pytest.raises(ConfigError, match="model settings"):
        load_pretrained(build_encoder(dataclasses.replace(CFG, embed_dim=16), seed=0), path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_pretrained(build_encoder(CFG, seed=0), tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(ConfigError, match="junk.pt"):
        load_pretrained(build_encoder(CFG, seed=0), tmp_path / "junk.pt")


TOKENS_CFG = EncoderConfig(modality="ecg", dropout=0.0, global_bins=10, global_max_hz=40.0, derived_channels=2)


def _ecg_windows(n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 30, 100, generator=gen)
    x[:, 1:] = 1.0 + torch.rand(n, 2, 1, 1, generator=gen)  # beat channels: a steady RR series per window
    return x


def test_token_scaling_standardises_the_tokens_on_the_public_windows_only():
    model = build_encoder(TOKENS_CFG, seed=0)
    public = [_ecg_windows(64, 0), _ecg_windows(32, 1)]
    raw = model.whole_window_tokens(torch.cat(public))
    assert set(raw) == {"global_scaling", "rhythm_scaling"}
    before = model.features(public[0]).detach()
    assert fit_token_scaling(model, public) == {"global_scaling": 10, "rhythm_scaling": 6}
    for name, v in raw.items():
        scaled = getattr(model, name)(v)
        assert scaled.mean(0).abs().max() < 1e-4  # centred on the public windows
        varying = v.std(0) > 1e-6
        assert torch.allclose(scaled.std(0)[varying], torch.ones(int(varying.sum())), atol=1e-3)
        assert torch.equal(getattr(model, name).scale[~varying], torch.ones(int((~varying).sum())))  # constant: scale stays 1
    assert not torch.allclose(model.features(public[0]).detach(), before)  # the encoder reads the scaled tokens
    assert not any(n.endswith(("shift", "scale")) for n, _ in model.named_parameters())  # fixed: DP-SGD never trains them


def test_the_token_scaling_travels_in_the_checkpoint_and_an_earlier_checkpoint_loads_unscaled(tmp_path):
    model = build_encoder(TOKENS_CFG, seed=0)
    fit_token_scaling(model, [_ecg_windows(64, 0)])
    fresh = build_encoder(TOKENS_CFG, seed=1)
    load_pretrained(fresh, save_checkpoint(model, tmp_path / "ecg.pt"))
    assert torch.equal(fresh.global_scaling.shift, model.global_scaling.shift)
    assert torch.equal(fresh.rhythm_scaling.scale, model.rhythm_scaling.scale)
    v1 = torch.load(tmp_path / "ecg.pt", weights_only=True)
    v1["format"] = "fedxalign-pretrained-v1"
    v1["state_dict"] = {k: v for k, v in v1["state_dict"].items() if "_scaling." not in k}
    torch.save(v1, tmp_path / "v1.pt")
    old = build_encoder(TOKENS_CFG, seed=1)
    load_pretrained(old, tmp_path / "v1.pt")
    assert torch.equal(old.head.weight, model.head.weight)
    assert torch.equal(old.global_scaling.shift, torch.zeros(10)) and torch.equal(old.global_scaling.scale, torch.ones(10))
    v2 = torch.load(tmp_path / "ecg.pt", weights_only=True)
    v2["state_dict"].pop("global_scaling.shift")  # a v2 checkpoint must hold its scaling
    torch.save(v2, tmp_path / "v2.pt")
    with pytest.raises(ConfigError, match="does not fit"):
        load_pretrained(build_encoder(TOKENS_CFG, seed=1), tmp_path / "v2.pt")
    v1["state_dict"].pop("head.weight")  # anything else missing is still refused
    torch.save(v1, tmp_path / "v1.pt")
    with pytest.raises(ConfigError, match="does not fit"):
        load_pretrained(build_encoder(TOKENS_CFG, seed=1), tmp_path / "v1.pt")
