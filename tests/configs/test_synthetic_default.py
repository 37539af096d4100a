"""The default federation's spec against what its figures need."""

from fedxalign.shared.data.split import split_subjects
from fedxalign.simulations.generate import federation_spec
from tests.conftest import compose_config


def test_the_default_paired_site_holds_out_at_least_two_subjects_for_the_fusion_table():
    cfg = compose_config("simulate")
    spec = federation_spec(cfg.synthetic)
    split = cfg.data.split
    assert spec.paired
    for p in spec.paired:
        subjects = [f"s{i}" for i in range(p.eeg.n_subjects)]
        sides = list(split_subjects(subjects, split.val_frac, split.test_frac, split.seed).values())
        assert sides.count("test") >= 2 and sides.count("train") > sides.count("test"), (p.name, sides)
