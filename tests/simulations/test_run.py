"""Which federation folder a simulated run reads, and when the generator may rewrite it."""

import yaml

from fedxalign.shared.data.synthetic.federation import MANIFEST
from fedxalign.simulations.run import prepare_federation
from tests.conftest import compose_config

SMALL = ["synthetic=tiny", "synthetic.sites=[{name: eeg_a, modality: eeg, format: edf, sfreq: 100, channels: [Fpz-Cz],"
         " n_subjects: 2, hours_per_record: 0.05}]"]


def _spec_of(root):
    return yaml.safe_load((root / MANIFEST).read_text())["spec"]


def test_the_configs_own_folder_follows_an_edited_spec_and_another_folder_is_never_regenerated(tmp_path):
    cfg = compose_config("simulate", [*SMALL, f"paths.data_dir={tmp_path}"])
    own = tmp_path / "tiny"
    prepare_federation(cfg, own)
    first = _spec_of(own)
    edited = compose_config("simulate", [*SMALL, f"paths.data_dir={tmp_path}", "synthetic.seed=5"])
    prepare_federation(edited, own)
    assert _spec_of(own) != first  # regenerated for the edited spec

    elsewhere = tmp_path / "mine"
    prepare_federation(cfg, elsewhere)  # empty: filled from the spec
    written = (elsewhere / MANIFEST).read_text()
    prepare_federation(edited, elsewhere)
    assert (elsewhere / MANIFEST).read_text() == written  # a folder the researcher points at is left as it is
