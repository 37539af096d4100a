import json
import shutil

from fedxalign.client.check_site import main


def test_summary_of_a_generated_site(tiny_federation, capsys):
    assert main([str(tiny_federation / "eeg_a"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "site 'eeg_a' (eeg, edf)" in out
    assert "records     4 read, 0 skipped" in out and "subjects    4" in out
    assert "channels    Fpz-Cz, Pz-Oz" in out and "rates       100 Hz" in out
    assert "status      OK" in out


def test_json_counts_match(tiny_federation, capsys):
    assert main([str(tiny_federation / "ecg_b"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["usable"] and report["n_records"] == 4 and report["sampling_rates"] == [360.0]
    total = sum(report["windows"]["all"].values())
    assert total == sum(sum(report["windows"][s].values()) for s in ("train", "val", "test")) and total > 30


def test_unusable_site_exits_non_zero(tiny_federation, tmp_path, capsys):
    folder = tmp_path / "broken"
    shutil.copytree(tiny_federation / "ecg_a", folder)
    for dat in folder.glob("*.dat"):
        dat.unlink()
    assert main([str(folder), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "UNUSABLE" in out and "do not exist" in out


def test_bad_settings_exit_2(tmp_path, capsys):
    (tmp_path / "site.yaml").write_text("name: x\nmodality: eeg\nformat: csv\nlabel_map: {a: W}\n")
    assert main([str(tmp_path)]) == 2
    assert "Allowed values are 'edf', 'bdf', 'wfdb', but got 'csv'" in capsys.readouterr().err


def test_real_folder_reports_reads_and_skips(real_dir, tmp_path, capsys):
    cfg = tmp_path / "site.yaml"
    cfg.write_text("name: real\nmodality: ecg\nformat: wfdb\nannotation_extension: atr\nlabel_map: {'(N': W}\n")
    assert main([str(real_dir), "--site-config", str(cfg), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "records     1 read, 1 skipped" in out and "rates       360 Hz" in out
    assert "s0010_re.hea: channels ['i', 'ii'" in out  # 15 PTB leads cannot join a 2-lead site
    assert "windows without a usable label" not in out  # nothing counted from the skipped record


def test_the_check_says_what_the_budget_means_per_patient(tiny_federation, tmp_path, capsys):
    assert main([str(tiny_federation / "eeg_a"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    k = report["max_windows_per_subject"]
    assert k >= 10 and f"up to {k} windows" in report["privacy"] and f"epsilon {8 * k:g}" in report["privacy"]
    folder = tmp_path / "eeg_a"
    shutil.copytree(tiny_federation / "eeg_a", folder)
    (folder / "policy.yaml").write_text("unit: subject\nepsilon: 4.0\n")
    assert main([str(folder), "--quiet"]) == 0
    assert "privacy     unit: subject (patient); each patient is protected at epsilon 4" in capsys.readouterr().out


def test_group_guarantee_is_the_standard_bound():
    from fedxalign.shared.privacy.policy import group_guarantee

    assert group_guarantee(1.0, 1e-5, 1) == (1.0, 1e-5)
    eps, delta = group_guarantee(0.5, 1e-6, 3)
    assert eps == 1.5 and abs(delta - 3 * 2.718281828 * 1e-6) < 1e-9
    assert group_guarantee(8.0, 1e-5, 60)[1] == 1.0  # 60 windows at epsilon 8: nothing is promised


def test_a_label_map_outside_the_vocabulary_is_a_settings_error(tiny_federation, tmp_path, capsys):
    folder = tmp_path / "eeg_a"
    shutil.copytree(tiny_federation / "eeg_a", folder)
    import yaml

    cfg = tmp_path / "site.yaml"
    values = yaml.safe_load((folder / "site.yaml").read_text())
    values["label_map"] = dict(values["label_map"]) | {"Sleep stage ?": "Unknown"}
    cfg.write_text(yaml.safe_dump(values))
    assert main([str(folder), "--site-config", str(cfg), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "label_map targets ['Unknown'] are not in the shared vocabulary" in err and "Traceback" not in err


def test_a_missing_annotation_file_is_named_and_skipped_records_reach_the_json(tiny_federation, tmp_path, capsys):
    folder = tmp_path / "ecg_a"
    shutil.copytree(tiny_federation / "ecg_a", folder)
    import yaml

    ext = yaml.safe_load((folder / "site.yaml").read_text()).get("annotation_extension", "st")
    for ann in folder.glob(f"*.{ext}"):
        ann.unlink()
    assert main([str(folder), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert not report["usable"] and len(report["skipped"]) == 4
    path, why = report["skipped"][0]
    assert f".{ext} not found" in why and path.endswith(".hea")  # the file looked for, by name


def test_the_check_prints_each_channels_own_rate_and_unit(tiny_federation, capsys):
    assert main([str(tiny_federation / "eeg_a"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "  Fpz-Cz: 100 Hz as recorded, unit V, 0 invalid samples costing 0 window(s)" in out and "invalid     0 labelled window(s) dropped in all" in out
    assert main([str(tiny_federation / "ecg_b"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["channel_units"] == {"MLII": ["mV"], "V5": ["mV"]} and report["channel_rates"]["MLII"] == [360.0]


def test_the_check_counts_invalid_samples_and_the_windows_they_cost(tmp_path, capsys):
    import numpy as np
    import wfdb

    fs = 250
    folder = tmp_path / "gaps"
    folder.mkdir()
    for rec in ("a", "b"):
        d = (np.sin(2 * np.pi * 1.1 * np.arange(fs * 120) / fs) * 1000).astype(np.int16).reshape(-1, 1)
        d[fs * 95: fs * 95 + 3, 0] = -32768
        wfdb.wrsamp(rec, fs=fs, units=["mV"], sig_name=["ECG"], d_signal=d, fmt=["16"], adc_gain=[1000.0], baseline=[0],
                    write_dir=str(folder))
        wfdb.wrann(rec, "st", np.array([1, 30 * fs, 60 * fs, 90 * fs]), ['"'] * 4, aux_note=["W", "2", "W", "2"],
                   write_dir=str(folder))
    (folder / "site.yaml").write_text("name: gaps\nmodality: ecg\nformat: wfdb\nannotation_extension: st\nlabel_map: {W: W, '2': N2}\n")
    assert main([str(folder), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["channel_invalid"] == {"ECG": 6} and report["invalid_windows"] == 2
    assert report["channel_invalid_windows"] == {"ECG": 2}
    assert report["dropped"] == {"invalid samples": 2}
