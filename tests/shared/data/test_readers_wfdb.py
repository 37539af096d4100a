from collections import Counter

import pytest

from shared.data.config import SiteConfig
from shared.data.readers.wfdb_reader import read_wfdb
from shared.errors import RecordError
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
