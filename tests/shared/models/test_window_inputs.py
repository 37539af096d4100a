"""The parameter-free encoder inputs, computed once per round: the same numbers, per window, in a batch layout both sides read."""

import numpy as np
import pytest
import torch

from fedxalign.shared.models.encoder import EncoderConfig, WindowInputs, build_encoder
from fedxalign.shared.models.window_inputs import WithWindowInputs, split_batch


def _encoders():
    eeg = build_encoder(EncoderConfig(global_bins=30, global_max_hz=30.0, sfreq=100.0, dropout=0.0), seed=0).eval()
    ecg = build_encoder(EncoderConfig(modality="ecg", global_bins=40, global_max_hz=40.0, sfreq=100.0, derived_channels=2,
                                      rhythm_token=True, dropout=0.0), seed=1).eval()
    return eeg, ecg


def _windows(n, channels, seed):
    x = torch.randn(n, channels, 30, 100, generator=torch.Generator().manual_seed(seed))
    return x.abs() if channels == 3 else x  # the ECG's beat channels are non-negative intervals


def test_the_forward_pass_with_precomputed_inputs_is_the_same_pass():
    for encoder, x in zip(_encoders(), (_windows(5, 2, 0), _windows(5, 3, 1))):
        inputs = encoder.window_inputs(x)
        assert inputs.patch_spectrum.shape == (5, x.shape[1], 30, 51)
        for with_inputs, without in zip(encoder(x, return_features=True, segments=3, inputs=inputs),
                                        encoder(x, return_features=True, segments=3)):
            if without is not None:
                torch.testing.assert_close(with_inputs, without, rtol=0, atol=0)
    eeg, ecg = _encoders()
    assert eeg.window_inputs(_windows(2, 2, 0)).rhythm.shape == (2, 0)  # no rhythm token: width 0
    assert ecg.window_inputs(_windows(2, 3, 1)).rhythm.shape == (2, 6)


def test_a_masked_window_refuses_the_unmasked_spectrum():
    eeg, _ = _encoders()
    x = _windows(2, 2, 0)
    mask = torch.zeros(2, 2, 30, dtype=torch.bool)
    mask[:, :, :5] = True
    with pytest.raises(ValueError, match="masked window needs its own"):
        eeg.patch_embedding(x, mask, eeg.window_inputs(x).patch_spectrum)


def test_each_windows_inputs_are_its_own_in_any_batch():
    """Computed in chunks over a training set, a window's inputs equal those of the window alone (per-sample clipping needs it)."""
    _, ecg = _encoders()
    x = _windows(7, 3, 2)
    ds = WithWindowInputs([x], [ecg], torch.arange(7), np.array(["a"] * 7, dtype=object))
    for i in (0, 6):
        alone = ecg.window_inputs(x[i : i + 1])
        for held, own in zip(ds.inputs[0], alone):
            torch.testing.assert_close(held[i : i + 1], own)


def test_items_and_batches_of_two_modalities_split_back_into_windows_inputs_and_labels():
    eeg, ecg = _encoders()
    xe, xc, y = _windows(4, 2, 0), _windows(4, 3, 1), torch.tensor([0, 1, 2, 3])
    ds = WithWindowInputs([xe, xc], [eeg, ecg], y)
    item = ds[2]
    assert len(item) == 2 + 2 * len(WindowInputs._fields) + 1 and int(item[-1]) == 2
    batch = torch.utils.data.default_collate([ds[i] for i in (1, 3)])
    (we, wc), (ie, ic), labels = split_batch(batch, 2)
    torch.testing.assert_close(we, xe[[1, 3]])
    torch.testing.assert_close(ic.rhythm, ecg.window_inputs(xc[[1, 3]]).rhythm)
    assert ie.rhythm.shape == (2, 0) and labels.tolist() == [1, 3]
    (w,), (none,), _ = split_batch([xe, y], 1)  # a plain (window, label) batch: the encoder computes its own
    assert none is None and w is xe
    with pytest.raises(ValueError, match="neither"):
        split_batch(batch[:-2] + batch[-1:], 2)
    with pytest.raises(ValueError, match="2 window tensors for 1 encoders"):
        WithWindowInputs([xe, xc], [eeg], y)
