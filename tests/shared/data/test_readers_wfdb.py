from collections import Counter

import pytest

from fedxalign.shared.data.config import SiteConfig
from fedxalign.shared.data.readers.wfdb_reader import read_wfdb
from fedxalign.shared.errors import RecordError
from tests.shared.data.helpers import notes_wfdb


def ecg_site(**kw):
    base = dict(name="e", modality="ecg", format="wfdb", label_map={"N": "normal"}, annotation_extension="atr")
    return SiteConfig(**(base | kw))


def test_real_mitbih_100(real_dir):
    rec = read_wfdb(real_dir / "100.hea", ecg_site(label_field="symbol"))
    assert rec.ch_names == ["MLII", "V5"]
    assert rec.sfreq == 360 and rec.signals.shape == (2, 650000)
    assert rec.units == ["mV", "mV"]
    assert 0.5 < rec.signals[0].max() - rec.signals[0].min() < 10  # millivolts, not ADC units
    symbols = Counter(a.label for a in rec.annotations)
    assert symbols["N"] == 2239 and symbols["A"] == 33 and symbols["V"] == 1
    assert all(a.duration == 0 for a in rec.annotations)
    assert [f.name for f in rec.files] == ["100.hea", "100.dat", "100.atr"]


def test_real_mitbih_rhythm_notes_become_spans(real_dir):
    rec = read_wfdb(real_dir / "100.hea", ecg_site(label_field="aux_note"))
    assert len(rec.annotations) == 1
    (note,) = rec.annotations
    assert note.label == "(N" and note.duration == pytest.approx(650000 / 360 - note.onset)


def test_real_ptb_two_signal_files_and_comments(real_dir):
    rec = read_wfdb(real_dir / "s0010_re.hea", ecg_site())
    assert len(rec.ch_names) == 15 and rec.ch_names[:2] == ["i", "ii"] and rec.ch_names[-3:] == ["vx", "vy", "vz"]
    assert rec.sfreq == 1000 and rec.signals.shape == (15, 38400)
    assert [f.name for f in rec.files] == ["s0010_re.hea", "s0010_re.dat", "s0010_re.xyz"]
    assert "age: 81" in rec.comments and rec.annotations == []


def test_missing_dat_is_named(tmp_path):
    notes_wfdb(tmp_path, "r1", ["W", "R"])
    (tmp_path / "r1.dat").unlink()
    with pytest.raises(RecordError, match=r"r1.hea: header names signal file\(s\) \['r1.dat'\] that do not exist"):
        read_wfdb(tmp_path / "r1.hea", ecg_site(annotation_extension="st"))


def test_generated_round_trip(tmp_path):
    notes_wfdb(tmp_path, "r1", ["W", "R", "W"], subject="P3")
    rec = read_wfdb(tmp_path / "r1.hea", ecg_site(annotation_extension="st"))
    assert rec.subject == "P3" and rec.sfreq == 250 and rec.ch_names == ["ECG"]
    assert [a.label for a in rec.annotations] == ["W", "R", "W"]
    assert rec.annotations[1].onset == 30.0 and rec.annotations[1].duration == 30.0


def _multi_frequency_record(folder, ann_fs):
    """Frame rate 125 Hz; ECG at 4 samples per frame (500 Hz), RESP at 1 (125 Hz); sleep-stage notes every 30 s."""
    import numpy as np
    import wfdb

    fs, seconds = 125, 120
    t = np.arange(seconds * 500) / 500
    ecg = np.sin(2 * np.pi * 1.2 * t) + 0.3 * np.sin(2 * np.pi * 17.0 * t)  # 17 Hz: survives only at the true rate
    resp = np.sin(2 * np.pi * 0.25 * np.arange(seconds * fs) / fs)
    wfdb.wrsamp("mf", fs=fs, units=["mV", "mV"], sig_name=["ECG", "RESP"], e_p_signal=[ecg, resp], samps_per_frame=[4, 1],
                fmt=["16", "16"], adc_gain=[1000.0, 1000.0], baseline=[0, 0], write_dir=str(folder))
    rate = ann_fs or fs
    starts = np.array([1, 30 * rate, 60 * rate, 90 * rate])  # not 0: wfdb reads a note at sample 0 as a definition
    kw = {"fs": ann_fs} if ann_fs else {}
    wfdb.wrann("mf", "st", starts, ['"'] * 4, aux_note=["W", "2", "R", "2"], write_dir=str(folder), **kw)
    return ecg


@pytest.mark.parametrize("ann_fs", [500, None])
def test_multi_frequency_record_keeps_true_rates_and_annotation_times(tmp_path, ann_fs):
    import numpy as np

    ecg = _multi_frequency_record(tmp_path, ann_fs)
    rec = read_wfdb(tmp_path / "mf.hea", ecg_site(label_map={"W": "W"}, annotation_extension="st"))
    assert rec.sfreq == 500 and rec.channel_rate("ECG") == 500 and rec.channel_rate("RESP") == 125
    assert np.allclose(rec.signals[0], ecg, atol=2e-3)  # the 500-Hz samples themselves, not frame averages
    assert [round(a.onset) for a in rec.annotations] == [0, 30, 60, 90]  # at the annotation file's rate, or the frame rate
    assert [round(a.duration) for a in rec.annotations] == [30, 30, 30, 30]


def test_a_slow_channel_is_refused_by_its_own_rate_in_a_fast_record(tmp_path):
    from fedxalign.shared.data.config import PreprocessConfig
    from fedxalign.shared.data.preprocess import preprocess_record

    _multi_frequency_record(tmp_path, 500)
    site = ecg_site(label_map={"W": "W", "2": "N2"}, annotation_extension="st", channels=("RESP",))
    rec = read_wfdb(tmp_path / "mf.hea", site)
    with pytest.raises(RecordError, match=r"RESP \(125 Hz\)"):
        preprocess_record(rec, site, PreprocessConfig(sfreq=200.0, h_freq=40.0), ["W", "N2"])
    ok = ecg_site(label_map={"W": "W", "2": "N2", "R": "REM"}, annotation_extension="st", channels=("ECG",))
    win = preprocess_record(read_wfdb(tmp_path / "mf.hea", ok), ok, PreprocessConfig(sfreq=200.0, h_freq=40.0), ["W", "N2", "REM"])
    assert win.y.tolist() == [0, 1, 2, 1]
