"""Runs of the main job on the default federation spec generated with a given seed (seed 0: the default
federation itself), shared by the benchmarks that repeat it over seeds."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parser(description: str, out: Path) -> argparse.ArgumentParser:
    """--seeds, --out, --reuse and trailing Hydra overrides; a benchmark adds its own options."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", type=Path, default=out)
    ap.add_argument("--reuse", action="store_true", help="keep runs that already have a summary.json")
    ap.add_argument("extra", nargs="*", help="more Hydra overrides for every run")
    return ap


def simulate(seed: int, folder: Path, overrides: list[str], reuse: bool) -> dict:
    """The run's summary.json, running `simulations.run` into `folder` unless `reuse` finds one there."""
    summary = folder / "summary.json"
    if summary.is_file() and not reuse:
        summary.unlink()
    if not summary.is_file():
        name = "default" if seed == 0 else f"default_seed{seed}"
        cmd = [sys.executable, "-m", "fedxalign.simulations.run", f"synthetic.seed={seed}", f"synthetic.name={name}",
               "plots=false", f"hydra.run.dir={folder}", *overrides]
        print("$", " ".join(cmd[1:]), flush=True)
        subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return json.loads(summary.read_text())
