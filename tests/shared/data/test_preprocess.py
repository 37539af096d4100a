from pathlib import Path

import numpy as np
import pytest

from fedxalign.shared.data.config import PreprocessConfig, SiteConfig
from fedxalign.shared.data.preprocess import label_windows, normalise, preprocess_record
from fedxalign.shared.data.readers.base import Annotation, RawRecord
from fedxalign.shared.errors import RecordError
from tests.shared.data.helpers import sine_channels

VOCAB = ["W", "N1"]
SITE = SiteConfig(name="s", modality="eeg", format="edf", label_map={"A": "W", "B": "N1"})
CFG = PreprocessConfig(sfreq=100.0, window_s=30.0, l_freq=0.3, h_freq=35.0)


def record(data, fs=200.0, annotations=None, names=None):
    names = names or [f"C{i}" for i in range(len(data))]
    annotations = annotations if annotations is not None else [Annotation(i * 30.0, 30.0, "A") for i in range(int(data.shape[1] / fs / 30))]
    return RawRecord("r", Path("r.edf"), data, fs, names, ["V"] * len(names), annotations)


def test_spans_need_full_coverage_points_take_majority():
    spans = [Annotation(0, 30, "A"), Annotation(30, 15, "A"), Annotation(45, 15, "B"), Annotation(60, 30, "Z")]
    y, unmapped, dropped = label_windows(spans, np.array([0.0, 30.0, 60.0, 90.0]), 30.0, SITE.label_map, VOCAB, 1.0)
    assert y.tolist() == [0, -1, -1, -1]
    assert unmapped == {"Z": 1} and dropped == {"mixed labels": 1, "unmapped label": 1, "no annotation": 1}
    y, _, _ = label_windows(spans, np.array([30.0]), 30.0, SITE.label_map, VOCAB, 0.5)
    assert y.tolist() == [0]
    points = [Annotation(t, 0, "B") for t in (1, 2, 3)] + [Annotation(4, 0, "A")]
    y, _, _ = label_windows(points, np.array([0.0]), 30.0, SITE.label_map, VOCAB, 0.7)
    assert y.tolist() == [1]


def test_windows_shape_resampled_and_normalised():
    out = preprocess_record(record(sine_channels(3, 120, 200.0)), SITE, CFG, VOCAB)
    assert out.x.shape == (4, 3, 3000) and out.x.dtype == np.float32
    assert out.onsets.tolist() == [0, 30, 60, 90]
    med = np.median(out.x, axis=-1)
    assert np.allclose(med, 0, atol=0.05)
    q75, q25 = np.percentile(out.x, [75, 25], axis=-1)
    assert np.allclose((q75 - q25) / 1.349, 1, atol=0.05)


def test_band_pass_removes_out_of_band_tone():
    t = np.arange(60 * 200) / 200.0
    data = np.stack([np.sin(2 * np.pi * 10 * t) + np.sin(2 * np.pi * 45 * t)])
    cfg = PreprocessConfig(sfreq=100.0, window_s=30.0, normalisation="none")
    x = preprocess_record(record(data), SITE, cfg, VOCAB).x[0, 0]
    spec = np.abs(np.fft.rfft(x))
    f = np.fft.rfftfreq(x.size, 0.01)
    assert spec[np.argmin(np.abs(f - 10))] > 100 * spec[np.argmin(np.abs(f - 45)) - 2 : np.argmin(np.abs(f - 45)) + 3].max()


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda d: d.__setitem__((1, slice(10, 9000)), np.nan), r"r.edf: channel\(s\) \['C1 \(75% invalid\)'\] are mostly invalid"),
        (lambda d: d.__setitem__(0, 0.0), r"r.edf: flat channel\(s\) \['C0'\]"),
    ],
)
def test_bad_channels_are_named(mutate, match):
    data = sine_channels(2, 60, 200.0)
    mutate(data)
    with pytest.raises(RecordError, match=match):
        preprocess_record(record(data), SITE, CFG, VOCAB)


def test_rate_below_federation_rate():
    with pytest.raises(RecordError, match=r"sampling rate of channel\(s\) \['C0 \(64 Hz\)'\] is below the federation's 100 Hz"):
        preprocess_record(record(sine_channels(1, 60, 64.0), fs=64.0), SITE, CFG, VOCAB)


def test_record_shorter_than_a_window():
    with pytest.raises(RecordError, match="shorter than one 30-s window"):
        preprocess_record(record(sine_channels(1, 20, 200.0), annotations=[]), SITE, CFG, VOCAB)


def test_missing_channel_lists_available():
    site = SiteConfig(name="s", modality="eeg", format="edf", label_map={"A": "W"}, channels=("Cz",))
    with pytest.raises(RecordError, match=r"channel\(s\) \['Cz'\] not found; the record has \['C0'\]"):
        preprocess_record(record(sine_channels(1, 60, 200.0)), site, CFG, VOCAB)


def test_channel_names_match_case_insensitively():
    site = SiteConfig(name="s", modality="eeg", format="edf", label_map={"A": "W"}, channels=("fpz-cz",))
    out = preprocess_record(record(sine_channels(2, 60, 200.0), names=["Fpz-Cz", "Pz-Oz"]), site, CFG, VOCAB)
    assert out.ch_names == ["Fpz-Cz"]


def test_robust_normalisation_ignores_a_spike():
    x = np.random.default_rng(0).normal(0, 3, (1, 1, 3000))
    x[..., 100] = 1e6
    z = normalise(x, "robust", 20.0)
    assert z.max() == 20.0 and abs(np.std(np.delete(z, 100)) - 1) < 0.1


def test_a_few_invalid_samples_drop_only_the_windows_they_touch():
    """3 bad samples used to discard the whole record; now only their windows go, counted."""
    data = sine_channels(2, 300, 200.0)  # ten 30-s windows
    data[0, 200 * 45] = np.nan  # window 1
    data[1, 200 * 45 + 7] = np.nan  # window 1 again
    data[1, 200 * 200] = np.nan  # window 6
    win = preprocess_record(record(data), SITE, CFG, VOCAB)
    assert len(win.y) == 8 and win.dropped["invalid samples"] == 2 and win.invalid == [1, 2]
    assert win.onsets.tolist() == [0.0, 60.0, 90.0, 120.0, 150.0, 210.0, 240.0, 270.0]
    assert np.all(np.isfinite(win.x))
