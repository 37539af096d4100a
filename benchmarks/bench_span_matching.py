"""Whether a run's paired site finds WHEN within an epoch, in the other modality: the patch level's own test.

    python benchmarks/bench_span_matching.py RUN_DIR [RUN_DIR ...]

For each finished run it embeds the paired site's held-out test pairs with the run's final
encoders and heads, cut into `fusion.patch_spans` time spans per window (as the patch-level term
sees them), and prints how often an EEG span's most similar ECG span of the SAME pair is the
span at the same time, and the other way round. Chance is 1 / spans. A run trained with the
patch-level term (`fusion.patch_weight` > 0) that stays at chance found nothing within an epoch
that both modalities share.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from bench_fusion_ceiling import paired_run
from fedxalign.client.training import project
from fedxalign.shared.data.paired import MODALITIES


@torch.no_grad()
def span_matching(folder: Path, spans: int) -> tuple[float, float, float]:
    """(EEG -> ECG, ECG -> EEG) share of spans matched to the same time, and the run's patch weight."""
    settings, site, server, enc = paired_run(folder)
    test = site.dataset("test")
    s = {m: project(enc[m].eval()(getattr(test, f"x_{m}"), return_features=True, segments=spans)[3], torch.from_numpy(server.heads[m]))
         for m in MODALITIES}
    sim = s["eeg"] @ s["ecg"].transpose(1, 2)  # (pairs, EEG span, ECG span)
    same = torch.arange(spans)
    return (float((sim.argmax(2) == same).float().mean()), float((sim.argmax(1) == same).float().mean()),
            float(settings.fusion.patch_weight))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path, nargs="+")
    ap.add_argument("--spans", type=int, default=6)
    args = ap.parse_args()
    print(f"{'run':40s} {'patch_weight':>12s} {'EEG->ECG':>9s} {'ECG->EEG':>9s}   (chance {1 / args.spans:.3f})")
    rows = []
    for folder in args.runs:
        rows.append(span_matching(folder, args.spans))
        print(f"{str(folder):40s} {rows[-1][2]:12g} {rows[-1][0]:9.3f} {rows[-1][1]:9.3f}", flush=True)
    print(f"{'mean':40s} {'':12s} {np.mean([r[0] for r in rows]):9.3f} {np.mean([r[1] for r in rows]):9.3f}")


if __name__ == "__main__":
    main()
