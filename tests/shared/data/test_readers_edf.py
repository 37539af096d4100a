import shutil

import mne
import numpy as np
import pytest

from fedxalign.shared.data.config import SiteConfig
from fedxalign.shared.data.readers.edf import check_edf_header, find_hypnogram, read_edf_like
from fedxalign.shared.errors import RecordError
from tests.shared.data.helpers import alternating_edf

SITE = SiteConfig(name="s", modality="eeg", format="edf", label_map={"A": "W", "B": "N1"})


def test_edf_round_trip_channels_rate_units_annotations(tmp_path):
    path = tmp_path / "rec.edf"
    alternating_edf(path, ["A", "B", "A"], subject="P7")
    rec = read_edf_like(path, SITE)
    assert rec.ch_names == ["Fpz-Cz", "Pz-Oz"]
    assert rec.sfreq == 100.0 and rec.signals.shape == (2, 9000)
    assert rec.units == ["V", "V"]
    # written in uV, read back in V: the sine amplitude of 20 uV survives scaling
    assert 1e-5 < np.abs(rec.signals).max() < 1e-4
    assert [(a.onset, a.duration, a.label) for a in rec.annotations] == [(0, 30, "A"), (30, 30, "B"), (60, 30, "A")]
    assert rec.subject == "P7"


def test_lying_header_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "rec.edf"
    alternating_edf(path, ["A", "B"])
    raw = bytearray(path.read_bytes())
    n = int(raw[236:244].decode())
    raw[236:244] = f"{n + 5:<8d}".encode()
    path.write_bytes(bytes(raw))
    with pytest.raises(RecordError, match=r"rec.edf: header declares .* data records .* truncated file or lying header"):
        read_edf_like(path, SITE)


def test_truncated_file_is_an_error(tmp_path):
    path = tmp_path / "rec.edf"
    alternating_edf(path, ["A", "B"])
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(RecordError, match="rec.edf"):
        read_edf_like(path, SITE)


def test_garbage_file_is_an_error(tmp_path):
    path = tmp_path / "junk.edf"
    path.write_bytes(b"not an edf at all" * 3)
    with pytest.raises(RecordError, match="junk.edf: file is 51 bytes"):
        read_edf_like(path, SITE)


def test_sleep_edf_hypnogram_pairing(tmp_path):
    (tmp_path / "SC4001E0-PSG.edf").touch()
    (tmp_path / "SC4001EC-Hypnogram.edf").touch()
    (tmp_path / "SC4011EC-Hypnogram.edf").touch()
    assert find_hypnogram(tmp_path / "SC4001E0-PSG.edf", "-Hypnogram.edf").name == "SC4001EC-Hypnogram.edf"


def test_real_annotation_only_edf(real_dir):
    path = real_dir / "test_edfann.edf"
    check_edf_header(path, 2)  # a real EDF+ passes the size check
    with pytest.raises(RecordError, match="holds no signal channels"):
        read_edf_like(path, SITE)


def test_real_hypnogram_labels_a_psg(real_dir, tmp_path):
    """The real EDF+ hypnogram (AASM names, 30-s spans, a zero-length 'Lights off' note) labels a PSG beside it."""
    hyp = tmp_path / "R01EC-Hypnogram.edf"
    shutil.copy(real_dir / "test_edfann.edf", hyp)
    annot = mne.read_annotations(hyp)
    n_epochs = 40
    alternating_edf(tmp_path / "R01E0-PSG.edf", ["x"] * n_epochs)
    site = SiteConfig(name="r", modality="eeg", format="edf", label_source="hypnogram",
                      label_map={"Sleep stage W": "W", "Sleep stage N1": "N1", "Sleep stage N2": "N2"})
    rec = read_edf_like(tmp_path / "R01E0-PSG.edf", site)
    assert rec.files[-1] == hyp
    spans = [a for a in rec.annotations if a.duration > 0]
    assert [a.label for a in spans[:10]] == [d for d, dur in zip(annot.description, annot.duration) if dur > 0][:10]
    assert spans[9].label == "Sleep stage N1" and spans[9].onset == 270.0


def _multi_rate_edf(path):
    """C3 at 200 Hz beside a 50-Hz channel, two 30-s epochs annotated A, B (EDF+ via edfio)."""
    from edfio import Edf, EdfAnnotation, EdfSignal

    rng = np.random.default_rng(0)
    rng_uv = (-500.0, 500.0)  # a recorder's fixed range: no sample sits at a digital extreme
    fast = EdfSignal(rng.normal(0, 20, 200 * 60), sampling_frequency=200, label="C3", physical_dimension="uV", physical_range=rng_uv)
    slow = EdfSignal(rng.normal(0, 20, 50 * 60), sampling_frequency=50, label="SLOW", physical_dimension="uV", physical_range=rng_uv)
    edf = Edf([fast, slow], annotations=[EdfAnnotation(0, 30, "A"), EdfAnnotation(30, 30, "B")])
    edf.write(path)


def test_multi_rate_edf_each_channel_keeps_its_own_rate(tmp_path):
    from fedxalign.shared.data.config import PreprocessConfig
    from fedxalign.shared.data.preprocess import preprocess_record

    path = tmp_path / "multi.edf"
    _multi_rate_edf(path)
    rec = read_edf_like(path, SITE)
    assert rec.sfreq == 200 and rec.channel_rate("C3") == 200 and rec.channel_rate("SLOW") == 50
    slow_site = SiteConfig(name="s", modality="eeg", format="edf", label_map={"A": "W", "B": "N1"}, channels=("SLOW",))
    with pytest.raises(RecordError, match=r"SLOW \(50 Hz\)"):  # as in a 50-Hz-only file, whatever the neighbour's rate
        preprocess_record(rec, slow_site, PreprocessConfig(), ["W", "N1"])
    fast_site = SiteConfig(name="s", modality="eeg", format="edf", label_map={"A": "W", "B": "N1"}, channels=("C3",))
    assert preprocess_record(rec, fast_site, PreprocessConfig(), ["W", "N1"]).y.tolist() == [0, 1]


def test_a_non_volt_channel_is_reported_and_refused_unless_allowed(tmp_path):
    from edfio import Edf, EdfAnnotation, EdfSignal

    from fedxalign.shared.data.config import PreprocessConfig
    from fedxalign.shared.data.preprocess import preprocess_record

    rng = np.random.default_rng(0)
    eeg = EdfSignal(rng.normal(0, 20, 100 * 60), sampling_frequency=100, label="C3", physical_dimension="uV",
                    physical_range=(-500.0, 500.0))
    temp = EdfSignal(36 + rng.normal(0, 0.1, 100 * 60), sampling_frequency=100, label="TEMP", physical_dimension="degC",
                     physical_range=(30.0, 42.0))
    Edf([eeg, temp], annotations=[EdfAnnotation(0, 30, "A"), EdfAnnotation(30, 30, "B")]).write(tmp_path / "t.edf")
    rec = read_edf_like(tmp_path / "t.edf", SITE)
    assert rec.units == ["V", "degC"]  # not labelled volts
    site = SiteConfig(name="s", modality="eeg", format="edf", label_map={"A": "W", "B": "N1"}, channels=("C3", "TEMP"))
    with pytest.raises(RecordError, match=r"TEMP \(degC\)"):
        preprocess_record(rec, site, PreprocessConfig(), ["W", "N1"])
    allowed = SiteConfig(name="s", modality="eeg", format="edf", label_map={"A": "W", "B": "N1"}, channels=("C3", "TEMP"),
                         allowed_units=("degC",))
    assert preprocess_record(rec, allowed, PreprocessConfig(), ["W", "N1"]).units == ["V", "degC"]


def test_edf_digital_extremes_drop_their_windows_only(tmp_path):
    from edfio import Edf, EdfAnnotation, EdfSignal

    from fedxalign.shared.data.config import PreprocessConfig
    from fedxalign.shared.data.preprocess import preprocess_record

    rng = np.random.default_rng(0)
    x = rng.normal(0, 20, 100 * 120)
    x[100 * 40: 100 * 40 + 3] = 500.0  # three samples clipped at the top of the range, in the second window
    sig = EdfSignal(x, sampling_frequency=100, label="C3", physical_dimension="uV", physical_range=(-500.0, 500.0))
    Edf([sig], annotations=[EdfAnnotation(30 * i, 30, "A") for i in range(4)]).write(tmp_path / "clip.edf")
    rec = read_edf_like(tmp_path / "clip.edf", SITE)
    assert int(np.isnan(rec.signals).sum()) == 3
    win = preprocess_record(rec, SITE, PreprocessConfig(), ["W", "N1"])
    assert win.onsets.tolist() == [0.0, 60.0, 90.0] and win.dropped["invalid samples"] == 1 and win.invalid == [3]


def test_wfdb_gaps_drop_their_windows_only(tmp_path):
    import wfdb

    from fedxalign.shared.data.config import PreprocessConfig
    from fedxalign.shared.data.preprocess import preprocess_record
    from fedxalign.shared.data.readers.wfdb_reader import read_wfdb

    fs = 250
    d = (np.sin(2 * np.pi * 1.1 * np.arange(fs * 120) / fs) * 1000).astype(np.int16).reshape(-1, 1)
    d[fs * 95: fs * 95 + 3, 0] = -32768  # WFDB's invalid-sample value, in the fourth window
    wfdb.wrsamp("gap", fs=fs, units=["mV"], sig_name=["ECG"], d_signal=d, fmt=["16"], adc_gain=[1000.0], baseline=[0],
                write_dir=str(tmp_path))
    wfdb.wrann("gap", "st", np.array([1, 30 * fs, 60 * fs, 90 * fs]), ['"'] * 4, aux_note=["W"] * 4, write_dir=str(tmp_path))
    site = SiteConfig(name="e", modality="ecg", format="wfdb", label_map={"W": "W"}, annotation_extension="st")
    win = preprocess_record(read_wfdb(tmp_path / "gap.hea", site), site, PreprocessConfig(h_freq=40.0), ["W", "N1"])
    assert win.onsets.tolist() == [0.0, 30.0, 60.0] and win.dropped["invalid samples"] == 1 and win.invalid == [3]


def test_a_missing_hypnogram_is_named(tmp_path):
    alternating_edf(tmp_path / "SC4001E0-PSG.edf", ["A", "B"])
    site = SiteConfig(name="s", modality="eeg", format="edf", label_map={"A": "W"}, label_source="hypnogram")
    with pytest.raises(RecordError, match=r"hypnogram file SC4001E0-Hypnogram.edf \(or SC4001E\?-Hypnogram.edf\) not found"):
        read_edf_like(tmp_path / "SC4001E0-PSG.edf", site)
