"""End to end: 2 EEG + 2 ECG tiny sites and a paired one, through `flwr run` in Flower's simulation engine: result files, budgets, the paired node."""

import csv
import json

import pytest

from fedxalign.simulations.run import simulate
from tests.conftest import compose_config


@pytest.fixture(scope="module")
def run(tiny_federation, paired_folder, tmp_path_factory):
    """The tiny federation plus one paired site (ONE Flower node): a federated pretraining round, then 2 prototype rounds.

    One run serves every test here: each simulated run starts its own SuperLink and Ray.
    """
    import shutil

    root = tmp_path_factory.mktemp("withpaired") / "fed"
    shutil.copytree(tiny_federation, root)
    shutil.copytree(paired_folder, root / "psg")
    out = root.parent / "out"
    cfg = compose_config("simulate", [
        f"federation.federation_dir={root}", f"federation.results_dir={out}", f"paths.cache_dir={out / 'cache'}",
        "federation.rounds=3", "federation.pretrain_rounds=1", "training.local_epochs=1", "baselines=[local]",
        "privacy.epsilon=8", "privacy.min_count=2", "pretraining.source=none",  # the public path: test_pretrain.py
        # tiny sites hold a few windows per class: at the default release noise (count std 8) a round
        # can release too few classes to align, and the alignment score is then undefined (NaN)
        "privacy.proto_noise_multiplier=3",
    ])
    return out, simulate(cfg)


def test_result_files(run):
    out, summary = run
    for name in ("rounds.json", "sites.csv", "evaluation.csv", "methods.csv", "summary.json", "checkpoint.npz",
                 "rounds.png", "embeddings_fedxalign.png", "fusion.csv", "flower/run.log", "flower/superlink.log"):
        assert (out / name).is_file(), name
    rounds = json.loads((out / "rounds.json").read_text())
    assert [r["round"] for r in rounds] == [1, 2, 3] and all(r["n_sites"] == 5 for r in rounds)
    assert set(summary["methods"]) == {"fedxalign", "local"}
    assert rounds[0]["alignment_after"] != rounds[0]["alignment_after"]  # the pretraining round released no prototype
    for r in rounds[1:]:
        assert r["alignment_after"] >= r["alignment_before"] - 1e-6


def test_every_site_within_budget_and_sent_only_prototypes(run):
    out, summary = run
    with (out / "sites.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert {r["site"] for r in rows} == {"eeg_a", "eeg_b", "ecg_a", "ecg_b", "psg"}
    assert all(0 < float(r["epsilon"]) <= float(r["epsilon_budget"]) == 8.0 for r in rows)
    assert summary["epsilon_within_budget"] is True
    for site in ("eeg_a", "ecg_b", "psg"):
        ledger = json.loads((out / "state" / site / "ledger.json").read_text())
        assert ledger["counts"]["prototype_release"] == 2 and ledger["epsilon_spent"] <= 8.0  # none in the pretraining round


def test_a_paired_site_joins_as_one_node_with_one_ledger_and_gets_a_fusion_table(run):
    out, summary = run
    rounds = json.loads((out / "rounds.json").read_text())
    assert all(r["n_sites"] == 5 and "psg" in r["sites"] for r in rounds)
    with (out / "sites.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["site"] == "psg"]
    assert [r["modality"] for r in rows] == ["paired", "paired", "paired"]
    assert (out / "state" / "psg" / "ledger.json").is_file() and not (out / "state" / "psg_eeg").exists()
    table = summary["fusion"]["rows"]
    assert set(table) == {"zero", "mean", "reconstruct", "masked", "encoder alone"}
    assert all(0 <= table[s][c] <= 1 for s in ("zero", "mean", "reconstruct", "masked") for c in ("both", "eeg", "ecg"))
    assert (out / "fusion.csv").is_file()
