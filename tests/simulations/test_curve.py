import csv
import json
import math

from hydra import compose, initialize_config_dir

from fedxalign.simulations.curve import collect, write_curve
from fedxalign.configs import CONFIG_DIR


def _method(cross, eeg, ecg):
    return {"eeg_to_ecg": cross, "ecg_to_eeg": cross, "probe_eeg": eeg, "probe_ecg": ecg}


def _run(folder, epsilon, fed):
    folder.mkdir()
    summary = {"epsilon": epsilon, "methods": {"fedxalign": _method(*fed), "central": _method(0.5, 0.7, 0.6),
                                               "features": _method(float("nan"), 0.6, 0.55), "local": _method(0.2, 0.5, 0.4)}}
    (folder / "summary.json").write_text(json.dumps(summary, default=float))  # inf as Infinity, as the run writes it


def test_a_sweep_ends_with_one_curve_over_its_runs(tmp_path):
    _run(tmp_path / "0_privacy.epsilon=8", 8.0, (0.4, 0.62, 0.5))
    _run(tmp_path / "1_privacy.epsilon=1", 1.0, (0.25, 0.45, 0.35))
    _run(tmp_path / "2_privacy.epsilon=inf", math.inf, (0.45, 0.66, 0.52))
    (tmp_path / "3_failed").mkdir()  # a run that died leaves no summary: skipped
    rows = write_curve(tmp_path)
    assert [r["epsilon"] for r in rows] == [1.0, 8.0, math.inf]
    assert [r["cross_modal"] for r in rows] == [0.25, 0.4, 0.45]
    assert (tmp_path / "privacy_utility.png").stat().st_size > 10_000
    with (tmp_path / "privacy_utility.csv").open() as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == 3 and float(table[0]["within_eeg"]) == 0.45 and float(table[2]["central_within_eeg"]) == 0.7


def test_no_finished_run_draws_nothing(tmp_path):
    assert collect(tmp_path) == [] and write_curve(tmp_path) == []
    assert not (tmp_path / "privacy_utility.png").exists()


def test_the_simulation_registers_the_curve_for_its_sweeps():
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        cfg = compose("simulate", return_hydra_config=True)
    assert cfg.hydra.callbacks.privacy_curve._target_ == "fedxalign.simulations.curve.PrivacyCurve"
