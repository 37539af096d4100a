"""Empirical privacy audit of one prototype release with many draws (the test runs the same audit with 2,000).

    python benchmarks/bench_audit.py [draws]

Prints, per noise multiplier, the claimed epsilon of one release (RDP, delta 1e-5) and the
empirical lower bound at 95% confidence; the lower bound must stay under the claim.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fedxalign.shared.privacy.audit import audit_release  # noqa: E402


def main() -> None:
    draws = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    print(f"one prototype release, worst-case canary, {draws} draws per neighbour, 95% Clopper-Pearson")
    print(f"{'noise mult.':>12} {'claimed eps':>12} {'empirical eps >=':>17} {'FPR <=':>8} {'FNR <=':>8} {'time s':>7}")
    for nm in (8.0, 4.0, 2.0, 1.0, 0.5):
        t0 = time.time()
        r = audit_release(draws, nm)
        print(f"{nm:>12g} {r.epsilon_claimed:>12.3f} {r.epsilon_lower:>17.3f} {r.fpr_upper:>8.4f} {r.fnr_upper:>8.4f} {time.time() - t0:>7.1f}")


if __name__ == "__main__":
    main()
