"""`fedxalign-check-site SITE_DIR`: read a site's data before it joins; sends nothing.

A folder with `paired.yaml` (EEG and ECG of the same epochs) is checked as a paired site:
each half as a site, then how many epochs pair and which record pairs are refused.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import yaml

from fedxalign.configs import CONFIG_DIR
from fedxalign.shared.data.config import DataConfig, SiteConfig, check_label_map
from fedxalign.shared.data.paired import is_paired_dir
from fedxalign.shared.data.site_check import check_paired_site, check_site, format_paired_report, format_report
from fedxalign.shared.errors import ConfigError
from fedxalign.shared.privacy.policy import SitePolicy

DEFAULT_DATA_CONFIG = Path(CONFIG_DIR) / "data" / "default.yaml"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="fedxalign-check-site", description=__doc__)
    p.add_argument("site_dir", type=Path, help="the site's data folder")
    p.add_argument("--site-config", type=Path, help="site settings YAML (default: SITE_DIR/site.yaml)")
    p.add_argument("--data-config", type=Path, default=DEFAULT_DATA_CONFIG,
                   help="the federation's vocabulary and preprocessing (default: %(default)s)")
    p.add_argument("--policy", type=Path, help="the site's privacy policy YAML (default: SITE_DIR/policy.yaml, else the strict defaults)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-file warnings")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Exit 0 when the site is usable, 1 when it is not, 2 on a settings error."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.ERROR if args.quiet or args.json else logging.WARNING, format="%(levelname)s %(message)s")
    if is_paired_dir(args.site_dir):
        return _check_paired(args)
    try:
        site = SiteConfig.from_mapping(yaml.safe_load(args.site_config.read_text())) if args.site_config else SiteConfig.from_site_dir(args.site_dir)
        data_cfg = DataConfig.from_mapping(yaml.safe_load(args.data_config.read_text()))
        policy = SitePolicy.load(args.site_dir, args.policy, named="--policy")
    except (ConfigError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        check_label_map(site, data_cfg.vocabulary)
        report = check_site(args.site_dir, site, data_cfg.preprocess[site.modality], data_cfg.vocabulary,
                            progress=not (args.quiet or args.json), policy=policy)
    except ConfigError as err:  # a settings error found while reading is still a settings error: exit 2, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_dict(), indent=2) if args.json else format_report(report))
    return 0 if report.usable else 1


def _check_paired(args: argparse.Namespace) -> int:
    try:
        if args.site_config:
            raise ConfigError(f"{args.site_dir} is a paired site: its halves' own site.yaml files configure it, not --site-config")
        data_cfg = DataConfig.from_mapping(yaml.safe_load(args.data_config.read_text()))
        policy = SitePolicy.load(args.site_dir, args.policy, named="--policy")
        report = check_paired_site(args.site_dir, data_cfg, progress=not (args.quiet or args.json), policy=policy)
    except (ConfigError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_dict(), indent=2) if args.json else format_paired_report(report))
    return 0 if report.usable else 1


if __name__ == "__main__":
    sys.exit(main())
