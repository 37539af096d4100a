"""The fusion head: each missing-modality strategy's inference path, and the modality dropout draw."""

import numpy as np
import pytest
import torch

from fedxalign.shared.models.fusion import STRATEGIES, FusionHead, build_fusion, draw_dropout

C = 5
DIM = C  # the head reads anchor scores: C per modality


@pytest.fixture
def head() -> FusionHead:
    h = build_fusion(C, "concat", seed=1)
    with torch.no_grad():
        h.mask_eeg.token.weight.fill_(0.7)
        h.mask_ecg.token.weight.fill_(-0.4)
    return h


def _z(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, DIM, generator=g), dim=-1)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("missing", ["eeg", "ecg"])
def test_every_strategy_predicts_with_one_modality_missing(head, strategy, missing):
    ze, zc = _z(seed=1), _z(seed=2)
    mean = {"eeg": torch.full((DIM,), 0.1), "ecg": torch.full((DIM,), -0.2)}
    scores = head.predict(None if missing == "eeg" else ze, None if missing == "ecg" else zc, strategy, mean["eeg"], mean["ecg"])
    assert scores.shape == (6, C) and np.isfinite(scores).all()
    present = zc if missing == "eeg" else ze
    with torch.no_grad():  # what each strategy must have put in the missing slot
        fill = {"zero": torch.zeros_like(present), "mean": mean[missing].expand_as(present),
                "reconstruct": (head.eeg_from_ecg if missing == "eeg" else head.ecg_from_eeg)(present)}
        if strategy == "masked":
            token = (head.mask_eeg if missing == "eeg" else head.mask_ecg).value().expand_as(present)
            args = (token, zc) if missing == "eeg" else (ze, token)
            want = head.masked(*args).numpy()
        else:
            args = (fill[strategy], zc) if missing == "eeg" else (ze, fill[strategy])
            want = head.decoder(*args).numpy()
    np.testing.assert_allclose(scores, want, rtol=1e-5, atol=1e-6)


def test_strategies_differ_when_a_modality_is_missing_and_agree_when_both_are_present(head):
    ze, zc = _z(seed=3), _z(seed=4)
    both = {s: head.predict(ze, zc, s, torch.zeros(DIM), torch.zeros(DIM)) for s in ("zero", "mean", "reconstruct")}
    assert all(np.allclose(both["zero"], v) for v in both.values())  # nothing to fill in: the same decoder
    only_eeg = {s: head.predict(ze, None, s, torch.ones(DIM), torch.ones(DIM)) for s in STRATEGIES}
    assert len({v.round(5).tobytes() for v in only_eeg.values()}) == len(STRATEGIES)


def test_both_modalities_missing_is_refused(head):
    with pytest.raises(ValueError):
        head.predict(None, None, "zero")
    with pytest.raises(ValueError, match="mean"):
        head.predict(_z(), None, "mean")


def test_modality_dropout_never_drops_both_and_drops_each_at_its_rate():
    drop = draw_dropout(20000, 0.3, torch.Generator().manual_seed(0))
    assert not (drop[:, 0] & drop[:, 1]).any()
    assert abs(drop[:, 0].float().mean().item() - 0.3) < 0.02 and abs(drop[:, 1].float().mean().item() - 0.3) < 0.02


def test_a_step_on_a_mask_token_moves_the_logits_no_further_than_the_same_step_on_a_bias():
    """The decoders weigh scores by 1 / tau; a token in score units would carry DP noise into the logits ten times over."""
    head = build_fusion(C, "concat", seed=1, tau=0.1)
    ze = _z()
    before = head.predict(ze, None, "masked")
    with torch.no_grad():
        head.mask_ecg.token.weight.add_(0.05)
    moved = np.abs(head.predict(ze, None, "masked") - before).max()
    assert 0 < moved <= 0.05 + 1e-6
