"""A paired site's data: records matched EEG to ECG, windows paired by onset, disagreeing timelines refused."""

import copy

import numpy as np

from fedxalign.shared.data.paired import PAIRED_FILE, federation_nodes, pair_site
from fedxalign.shared.data.site_check import check_paired_site, format_paired_report


def test_every_epoch_with_both_modalities_is_a_pair_with_one_label(paired_data):
    assert len(paired_data.y) == len(paired_data.eeg.y) == len(paired_data.ecg.y) > 0
    assert np.array_equal(paired_data.eeg.y[paired_data.eeg_index], paired_data.ecg.y[paired_data.ecg_index])
    np.testing.assert_allclose(paired_data.eeg.onsets[paired_data.eeg_index], paired_data.ecg.onsets[paired_data.ecg_index])
    assert set(paired_data.split) == {"train", "val", "test"}
    for s in ("train", "val", "test"):  # a subject's pairs stay on one side
        assert not set(paired_data.subject[paired_data.split == s]) & set(paired_data.subject[paired_data.split != s])


def test_a_paired_folder_is_one_node_unless_split(paired_folder):
    root = paired_folder.parent
    assert federation_nodes(root) == [paired_folder]
    assert federation_nodes(root, paired_as_one=False) == sorted([paired_folder / "ecg", paired_folder / "eeg"])
    assert (paired_folder / PAIRED_FILE).is_file()


def test_a_pair_whose_durations_disagree_is_refused(paired_data):
    ecg = copy.deepcopy(paired_data.ecg)
    ecg.records[0].duration_s += 120
    out = pair_site("psg", paired_data.eeg, ecg)
    refused = [p for p in out.record_pairs if p.refused]
    assert len(refused) == 1 and "timelines disagree" in refused[0].refused and "EEG lasts" in refused[0].refused
    assert len(out.y) == len(paired_data.y) - refused[0].eeg_windows


def test_a_pair_shifted_in_time_is_refused_by_its_labels(paired_data):
    ecg = copy.deepcopy(paired_data.ecg)
    first = np.flatnonzero(ecg.record == ecg.records[0].name)
    ecg.y[first] = np.roll(ecg.y[first], 3)  # the ECG's stages three epochs late: the two clocks disagree
    out = pair_site("psg", paired_data.eeg, ecg)
    assert [p.refused.startswith("timelines disagree: the two records' stages differ") for p in out.record_pairs].count(True) == 1


def test_the_site_check_reports_pairs_per_record_and_split(paired_folder, data_cfg):
    report = check_paired_site(paired_folder, data_cfg, progress=False)
    assert report.usable and report.pairs["all"] == sum(p.pairs for p in report.record_pairs) > 0
    text = format_paired_report(report)
    assert "pairs per split" in text and "ONE node" in text and f"{report.record_pairs[0].pairs} pairs" in text


def test_the_site_check_refuses_halves_in_the_wrong_folders(paired_folder, data_cfg, tmp_path):
    import shutil

    import yaml

    swapped = tmp_path / "psg"
    shutil.copytree(paired_folder, swapped)
    cfg = yaml.safe_load((swapped / PAIRED_FILE).read_text())
    cfg["eeg"], cfg["ecg"] = cfg["ecg"], cfg["eeg"]
    (swapped / PAIRED_FILE).write_text(yaml.safe_dump(cfg))
    report = check_paired_site(swapped, data_cfg, progress=False)
    assert not report.usable and "the EEG folder's site.yaml says modality 'ecg'" in report.problem


def test_a_half_names_its_paired_node_and_a_single_site_none():
    from fedxalign.shared.data.paired import paired_node_of

    assert paired_node_of("psg/eeg", {"psg"}) == "psg"
    assert paired_node_of("psg/eeg", {"other"}) is None and paired_node_of("psg", {"psg"}) is None
