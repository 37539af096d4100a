"""One poisoned site of five: relative shift of the aggregated prototypes and weights per aggregator and attack.

    python benchmarks/bench_poisoning.py

Prototype shift: max over classes of |poisoned - clean| / mean clean inter-class distance.
Weight shift: |poisoned - clean| / |clean update|. Printed for three levels of honest-site
heterogeneity, since a robust aggregator's shift grows with how much honest sites disagree.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fedxalign.simulations.poisoning import ATTACKS, Scenario, shifts  # noqa: E402


def main() -> None:
    for h in (0.1, 0.2, 0.4):
        print(f"\nhonest-site heterogeneity {h:.1f} (5 sites, 1 poisoned); cells: prototype shift / weight shift")
        print(f"{'aggregator':<14}" + "".join(f"{a:>22}" for a in ATTACKS))
        for method in ("mean", "trimmed_mean", "median", "centered_clip"):
            cells = [shifts(a, method, Scenario(heterogeneity=h)) for a in ATTACKS]
            print(f"{method:<14}" + "".join(f"{p:>12.3f} / {w:<7.3f}" for p, w in cells))


if __name__ == "__main__":
    main()
