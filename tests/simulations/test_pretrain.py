"""The public-pretraining path of the simulation: a corpus is written once, pretrained once per settings, then reused."""

import dataclasses

import torch

from fedxalign.client.site_round import load_encoder
import fedxalign.simulations.pretrain as sp
from fedxalign.simulations.pretrain import ensure_pretrained, pretrain_settings
from fedxalign.simulations.settings import run_settings
from tests.conftest import compose_config


def test_public_checkpoints_are_made_once_and_sites_start_from_them(tmp_path, monkeypatch):
    cfg = compose_config("simulate", ["synthetic=tiny", f"paths.data_dir={tmp_path / 'data'}", f"paths.cache_dir={tmp_path / 'cache'}",
                                      "federation.results_dir=x", "pretraining.epochs=1"])
    settings = run_settings(cfg)
    pcfg = pretrain_settings(cfg)
    template = ensure_pretrained(cfg.synthetic, tmp_path / "data", tmp_path / "cache", settings, pcfg)  # the tiny spec as corpus
    assert (tmp_path / "data" / "corpus-tiny" / "federation.yaml").is_file()
    for m in ("eeg", "ecg"):
        path = template.format(modality=m)
        ckpt = torch.load(path, weights_only=True)
        assert ckpt["meta"]["epoch_losses"] and ckpt["config"]["modality"] == m
    ecg = torch.load(template.format(modality="ecg"), weights_only=True)  # both tokens' scaling, fitted on the corpus
    bins = settings.model_for("ecg").global_bins
    assert bins > 0 and ecg["meta"]["token_scaling"] == {"global_scaling": bins, "rhythm_scaling": 6}
    for name, dim in ecg["meta"]["token_scaling"].items():
        assert not torch.equal(ecg["state_dict"][f"{name}.shift"], torch.zeros(dim))
        assert not torch.equal(ecg["state_dict"][f"{name}.scale"], torch.ones(dim))
    # cached: a second call neither regenerates nor retrains
    monkeypatch.setattr(sp, "pretrain_corpus", lambda *a, **k: (_ for _ in ()).throw(AssertionError("pretrained again")))
    assert ensure_pretrained(cfg.synthetic, tmp_path / "data", tmp_path / "cache", settings, pcfg) == template
    model_cfg = dataclasses.replace(settings.model_for("ecg"), pretrained=template)
    site = load_encoder(tmp_path / "state", model_cfg, "ecg_a", None)
    ref = torch.load(template.format(modality="ecg"), weights_only=True)["state_dict"]
    assert torch.equal(site.state_dict()["proj_out.0.weight"], ref["proj_out.0.weight"])


def test_the_pretrain_commands_checkpoints_load_into_the_encoders_a_run_builds(tiny_federation, tmp_path):
    """fedxalign-pretrain derives each modality's encoder as a run does (patch length, beat channels),
    so a run refuses none of its checkpoints."""
    import subprocess
    import sys

    from fedxalign.shared.models.encoder import build_encoder
    from fedxalign.shared.models.pretraining import load_pretrained

    out = tmp_path / "ckpt"
    subprocess.run([sys.executable, "-m", "fedxalign.simulations.pretrain", f"corpus_dir={tiny_federation}", f"out_dir={out}",
                    "pretraining.epochs=1", f"paths.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'hydra'}"],
                   check=True, capture_output=True, text=True)
    settings = run_settings(compose_config("simulate", ["federation.results_dir=x"]))
    for m in ("eeg", "ecg"):
        load_pretrained(build_encoder(settings.model_for(m), seed=0), out / f"{m}.pt")
