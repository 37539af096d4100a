import os
import shutil

import mne
import numpy as np
import pytest
import wfdb

from fedxalign.shared.data.config import SiteConfig
from fedxalign.shared.data.site import load_site
from fedxalign.shared.errors import SiteError
from tests.shared.data.helpers import alternating_edf, tree_digest

VOCAB = ["W", "N1", "N2", "N3", "REM"]


def load(folder, data_cfg, **kw):
    site = kw.pop("site", None) or SiteConfig.from_site_dir(folder)
    return load_site(folder, site, data_cfg.preprocess[site.modality], data_cfg.vocabulary, progress=False, **kw)


def test_labels_land_on_the_right_windows_edf_hypnogram(tiny_federation, data_cfg):
    """Each window's label equals the hypnogram epoch it covers, read independently with MNE."""
    folder = tiny_federation / "eeg_a"
    data = load(folder, data_cfg)
    site = SiteConfig.from_site_dir(folder)
    for rec in data.records:
        hyp = next(folder.glob(rec.name[:-1] + "*-Hypnogram.edf"))
        truth = {o: site.label_map.get(d) for o, d in zip(mne.read_annotations(hyp).onset, mne.read_annotations(hyp).description)}
        mask = data.record == rec.name
        got = [VOCAB[i] for i in data.y[mask]]
        want = [truth[o] for o in data.onsets[mask]]
        assert got == want and len(got) > 5


def test_labels_land_on_the_right_windows_wfdb(tiny_federation, data_cfg):
    folder = tiny_federation / "ecg_a"
    data = load(folder, data_cfg)
    site = SiteConfig.from_site_dir(folder)
    for rec in data.records:
        ann = wfdb.rdann(str(folder / rec.name), "st")
        truth = {round(s / ann.fs / 30) * 30: site.label_map.get(n) for s, n in zip(ann.sample, ann.aux_note)}
        mask = data.record == rec.name
        assert [VOCAB[i] for i in data.y[mask]] == [truth[o] for o in data.onsets[mask]]


def test_every_generated_site_round_trips(tiny_federation, data_cfg):
    beats = 2 if data_cfg.preprocess["ecg"].beat_channels else 0  # RR and |dRR| after the leads
    for name, n_ch in [("eeg_a", 2), ("eeg_b", 3), ("ecg_a", 1 + beats), ("ecg_b", 2 + beats)]:
        data = load(tiny_federation / name, data_cfg)
        assert data.x.shape[1:] == (n_ch, 3000) and not data.skipped
        assert len(data.records) == 4 and np.isfinite(data.x).all()
        ds = data.dataset("train")
        x, y = ds[0]
        assert tuple(x.shape) == (n_ch, 30, 100) and 0 <= int(y) < 5
        assert ds.site == name and len(ds.subject) == len(ds) and set(ds.subject) <= set(data.subject[data.split == "train"])


def test_subject_split_has_no_overlap(tmp_path, data_cfg):
    """Two records per subject: both land in the same split, and splits share no subject."""
    folder = tmp_path / "site"
    folder.mkdir()
    for subj in range(5):
        for night in range(2):
            alternating_edf(folder / f"p{subj}_n{night}.edf", ["A", "B", "A", "B"], subject=f"P{subj}")
    site = SiteConfig(name="s", modality="eeg", format="edf", label_map={"A": "W", "B": "N2"})
    data = load(folder, data_cfg, site=site)
    by_split = {s: set(data.subject[data.split == s]) for s in ("train", "val", "test")}
    assert all(by_split.values())
    assert not (by_split["train"] & by_split["val"]) and not (by_split["train"] & by_split["test"]) and not (by_split["val"] & by_split["test"])
    for rec in data.records:
        assert len(set(data.split[data.record == rec.name])) == 1


def test_records_tsv_and_regex_set_subjects(tmp_path, data_cfg):
    folder = tmp_path / "site"
    folder.mkdir()
    for name in ("SC4001", "SC4002", "SC4011"):
        alternating_edf(folder / f"{name}.edf", ["A", "B"], subject="X")
    site = SiteConfig(name="s", modality="eeg", format="edf", label_map={"A": "W", "B": "N2"}, subject_regex=r"SC4(\d\d)")
    assert sorted({r.subject for r in load(folder, data_cfg, site=site).records}) == ["00", "01"]
    (folder / "records.tsv").write_text("record\tsubject\nSC4001\tamy\nSC4002\tbob\nSC4011\tbob\n")
    assert sorted(r.subject for r in load(folder, data_cfg, site=site).records) == ["amy", "bob", "bob"]


def test_one_bad_record_is_skipped_and_nothing_is_modified(tiny_federation, tmp_path, data_cfg):
    folder = tmp_path / "ecg_a"
    shutil.copytree(tiny_federation / "ecg_a", folder)
    (folder / "ecg_a_01_1.dat").unlink()
    (folder / "ecg_a_02_1.dat").write_bytes(b"\x00" * 10)  # truncated signal file
    before = tree_digest(folder)
    data = load(folder, data_cfg, cache_dir=tmp_path / "cache")
    assert tree_digest(folder) == before
    assert len(data.records) == 2
    reasons = dict((os.path.basename(p), r) for p, r in data.skipped)
    assert "ecg_a_01_1.dat" in reasons["ecg_a_01_1.hea"]
    assert "ecg_a_02_1.hea" in reasons


def test_label_map_that_maps_nothing(tiny_federation, data_cfg):
    site = SiteConfig.from_site_dir(tiny_federation / "eeg_b")
    wrong = SiteConfig(**(site.to_dict() | {"label_map": {"Wake": "W"}}))
    with pytest.raises(SiteError, match=r"label map maps none of the annotation names found \(\['artefact', 'n1'"):
        load(tiny_federation / "eeg_b", data_cfg, site=wrong)


def test_unmapped_labels_are_counted(tiny_federation, data_cfg):
    data = load(tiny_federation / "eeg_a", data_cfg)
    site = SiteConfig.from_site_dir(tiny_federation / "eeg_a")
    partial = SiteConfig(**(site.to_dict() | {"label_map": {"Sleep stage W": "W"}}))
    less = load(tiny_federation / "eeg_a", data_cfg, site=partial)
    assert set(less.y) == {0} and less.unmapped["Sleep stage R"] > 0
    assert (data.y == 0).sum() == len(less.y)


def test_cache_hit_is_identical_and_invalidated_by_a_change(tiny_federation, tmp_path, data_cfg):
    folder = tmp_path / "eeg_b"
    shutil.copytree(tiny_federation / "eeg_b", folder)
    first = load(folder, data_cfg, cache_dir=tmp_path / "cache")
    second = load(folder, data_cfg, cache_dir=tmp_path / "cache")
    assert first.cache_hits == 0 and second.cache_hits == 4
    assert np.array_equal(first.x, second.x) and np.array_equal(first.y, second.y)
    victim = sorted(folder.glob("*.bdf"))[0]
    os.utime(victim, ns=(victim.stat().st_atime_ns, victim.stat().st_mtime_ns + 10**9))
    assert load(folder, data_cfg, cache_dir=tmp_path / "cache").cache_hits == 3


def test_empty_or_missing_folder(tmp_path, data_cfg):
    site = SiteConfig(name="s", modality="ecg", format="wfdb", label_map={"W": "W"})
    with pytest.raises(SiteError, match="does not exist"):
        load(tmp_path / "nope", data_cfg, site=site)
    with pytest.raises(SiteError, match=r"no wfdb record found"):
        load(tmp_path, data_cfg, site=site)


def test_real_mitbih_site_with_rhythm_labels(real_dir, data_cfg, tmp_path):
    """Record 100 as a one-record site labelled by its '(N' rhythm note: 60 full windows of 'normal'."""
    folder = tmp_path / "mitdb"
    folder.mkdir()
    for ext in ("hea", "dat", "atr"):
        shutil.copy(real_dir / f"100.{ext}", folder)
    site = SiteConfig(name="mitdb", modality="ecg", format="wfdb", label_map={"(N": "normal"}, annotation_extension="atr")
    data = load_site(folder, site, data_cfg.preprocess["ecg"], ["normal", "afib"], progress=False)
    assert data.x.shape == (60, 2 + 2, 3000) and set(data.y) == {0}  # two leads, then the RR and |dRR| channels
    assert data.records[0].subject == "100" and data.records[0].sfreq == 360
    # the real record's 2273 beats in 30:06 are 75.5 per minute: the RR channel must say so
    from fedxalign.shared.data.beats import RR_CENTRE_S, RR_SCALE_S
    assert abs(60.0 / np.mean(data.x[:, 2] * RR_SCALE_S + RR_CENTRE_S) - 75.5) < 2.0


def test_a_site_of_the_same_name_elsewhere_never_gets_anothers_cached_windows(tiny_federation, tmp_path, data_cfg):
    """Two federations with the same site and record names (another generator seed, a copy being edited):
    each record is served its own windows, not the first one's from the cache."""
    first, other = tmp_path / "fed_a" / "ecg_a", tmp_path / "fed_b" / "ecg_a"
    shutil.copytree(tiny_federation / "ecg_a", first)
    shutil.copytree(tiny_federation / "ecg_a", other)
    a = load(first, data_cfg, cache_dir=tmp_path / "cache")
    for dat in other.glob("*.dat"):  # same names and sizes, other samples
        raw = np.fromfile(dat, dtype="<i2")
        np.roll(raw, 12345).tofile(dat)
    b = load(other, data_cfg, cache_dir=tmp_path / "cache")
    assert b.cache_hits == 0 and not np.array_equal(a.x, b.x)
    assert load(first, data_cfg, cache_dir=tmp_path / "cache").cache_hits == len(a.records)
