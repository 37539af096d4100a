"""What fusion could reach at a run's paired site: non-private fits on the embeddings the run ends with.

    python benchmarks/bench_fusion_ceiling.py RUN_DIR [RUN_DIR ...]

For each finished run (a `make run` or `bench_fusion.py` results folder) it embeds the paired
site's train, validation and test pairs with the run's final encoders and heads, reads them as
anchor scores (what the fusion head reads), and scores on the test pairs:
  - each modality's nearest anchor (the `encoder alone` row of the fusion table);
  - the plain sum of the two modalities' scores (where the DP-trained decoders start);
  - the run's DP-trained concat decoder;
  - logistic regressions fitted WITHOUT privacy on the train and validation pairs: EEG's scores,
    ECG's, both;
  - the sum weighted w * EEG + (1 - w) * ECG, with w chosen on the validation pairs.
No DP anywhere: this is a ceiling for the fusion targets of issue 9 on that run's embeddings,
not something a site may run and release.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf
from sklearn.linear_model import LogisticRegression

from fedxalign.client.node import state_dir
from fedxalign.client.paired_round import load_fusion
from fedxalign.client.site_round import load_paired_encoder
from fedxalign.client.training import embed
from fedxalign.server.strategy import ServerState
from fedxalign.shared.data.paired import MODALITIES, federation_nodes, is_paired_dir, load_paired_site
from fedxalign.shared.models.fusion import anchor_scores
from fedxalign.simulations.baseline import balanced_accuracy
from fedxalign.simulations.settings import run_settings

WEIGHTS = np.linspace(0.0, 1.0, 21)


def paired_run(folder: Path):
    """A finished run's settings, its first paired site's data, the server's final state and that site's final encoders."""
    cfg = OmegaConf.load(folder / ".hydra" / "config.yaml")
    cfg.federation.results_dir = str(folder)
    settings = run_settings(cfg)
    nodes = federation_nodes(Path(settings.federation.federation_dir), True)
    paired = [load_paired_site(n, settings.data, settings.federation.cache_dir) for n in nodes if is_paired_dir(n)]
    if not paired:
        raise SystemExit(f"{folder}: the run's federation has no paired site")
    site, server = paired[0], ServerState.load(folder / "checkpoint.npz")
    enc = {m: load_paired_encoder(state_dir(folder / "state", site.name), settings.model_for(m), site.name, server.weights.get(m))
           for m in MODALITIES}
    return settings, site, server, enc


def scores_by_split(folder: Path) -> tuple[dict[str, tuple[dict[str, np.ndarray], np.ndarray]], object]:
    """{split: ({modality: (n, C) anchor scores}, labels)} for the first paired site, and the run's fusion head."""
    settings, site, server, enc = paired_run(folder)
    anchors = {m: (torch.from_numpy(server.anchors[m]).float(), torch.from_numpy(server.present[m])) for m in MODALITIES}
    out = {}
    for split in ("train", "val", "test"):
        d = site.dataset(split)
        z = {m: torch.from_numpy(embed(enc[m], getattr(d, f"x_{m}"), torch.from_numpy(server.heads[m]))) for m in MODALITIES}
        out[split] = ({m: anchor_scores(z[m], *anchors[m]).numpy() for m in MODALITIES}, d.y.numpy())
    fusion = load_fusion(folder / "state", "server", len(settings.data.vocabulary), settings.fusion, server.fusion)
    return out, fusion


def ceiling(folder: Path) -> dict[str, float]:
    s, fusion = scores_by_split(folder)
    (tr, y_tr), (va, y_va), (te, y_te) = s["train"], s["val"], s["test"]
    fit = {m: np.concatenate([tr[m], va[m]]) for m in MODALITIES}
    y_fit = np.concatenate([y_tr, y_va])
    score = lambda logits: balanced_accuracy(y_te, logits.argmax(1))  # noqa: E731
    row = {"EEG anchor": score(te["eeg"]), "ECG anchor": score(te["ecg"]), "sum": score(te["eeg"] + te["ecg"])}
    with torch.no_grad():
        row["DP decoder"] = score(fusion.decoder(torch.from_numpy(te["eeg"]), torch.from_numpy(te["ecg"])).numpy())
    for name, cols in (("LR EEG", ["eeg"]), ("LR ECG", ["ecg"]), ("LR both", ["eeg", "ecg"])):
        lr = LogisticRegression(max_iter=2000).fit(np.hstack([fit[m] for m in cols]), y_fit)
        row[name] = balanced_accuracy(y_te, lr.predict(np.hstack([te[m] for m in cols])))
    on_val = [balanced_accuracy(y_va, (w * va["eeg"] + (1 - w) * va["ecg"]).argmax(1)) for w in WEIGHTS]
    w = float(WEIGHTS[int(np.argmax(on_val))])
    row["weighted"] = score(w * te["eeg"] + (1 - w) * te["ecg"])
    row["w (val)"] = w
    row["val EEG"], row["val ECG"] = (balanced_accuracy(y_va, va[m].argmax(1)) for m in MODALITIES)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path, nargs="+")
    args = ap.parse_args()
    rows = {str(f): ceiling(f) for f in args.runs}
    cols = list(next(iter(rows.values())))
    width = max(len(k) for k in rows)
    print(f"{'run':{width}s} " + " ".join(f"{c:>11s}" for c in cols))
    for name, r in rows.items():
        print(f"{name:{width}s} " + " ".join(f"{r[c]:11.3f}" for c in cols))
    print(f"{'mean':{width}s} " + " ".join(f"{np.mean([r[c] for r in rows.values()]):11.3f}" for c in cols))
    print("w (val): the weight chosen on the validation pairs; val EEG, val ECG: their nearest-anchor accuracy")


if __name__ == "__main__":
    main()
