"""Load/preprocess throughput of the data layer on a generated EEG site of >= 50 hours.

Prints windows/s for the first load (read + resample + filter + window + normalise, cache
written) and for a cached load. Usage: python benchmarks/bench_data.py [--hours 50] [--keep DIR]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from fedxalign.shared.data.config import PreprocessConfig, SiteConfig
from fedxalign.shared.data.site import load_site
from fedxalign.shared.data.synthetic.federation import FederationSpec, generate_federation
from fedxalign.shared.data.synthetic.states import STAGES


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--hours", type=float, default=50.0)
    p.add_argument("--hours-per-record", type=float, default=2.0)
    p.add_argument("--sfreq", type=float, default=256.0)
    p.add_argument("--keep", type=Path, help="write the site here and keep it (default: a temp folder)")
    args = p.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="fedxalign-bench-"))
    n_subjects = max(1, round(args.hours / args.hours_per_record))
    spec = FederationSpec.from_mapping({"seed": 0, "sites": [{
        "name": "bench_eeg", "modality": "eeg", "format": "edf", "label_source": "embedded", "sfreq": args.sfreq,
        "channels": ["Fpz-Cz", "Pz-Oz"], "n_subjects": n_subjects, "hours_per_record": args.hours_per_record}]})
    folder = root / "bench_eeg"
    if not (folder / "site.yaml").is_file():
        t = time.perf_counter()
        generate_federation(spec, root, overwrite=True)
        print(f"generated {n_subjects * args.hours_per_record:.0f} h of 2-channel {args.sfreq:g} Hz EEG in {time.perf_counter() - t:.1f} s")
    site = SiteConfig.from_site_dir(folder)
    cfg = PreprocessConfig()
    cache = root / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    size_mb = sum(f.stat().st_size for f in folder.glob("*.edf")) / 2**20
    for label in ("first load (cache written)", "cached load"):
        t = time.perf_counter()
        data = load_site(folder, site, cfg, STAGES, cache_dir=cache, progress=False)
        dt = time.perf_counter() - t
        print(f"{label:28s} {len(data.y):6d} windows in {dt:7.2f} s = {len(data.y) / dt:9.0f} windows/s  ({size_mb / dt:7.1f} MB/s of EDF)")
    if args.keep is None:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
