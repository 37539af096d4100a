"""Regenerate `[tool.flwr.app.config]` in pyproject.toml from the Hydra defaults, so `flwr run` and
`make run` start from the same settings: `python -m fedxalign.simulations.flwr_config [--check]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir

from fedxalign.configs import CONFIG_DIR
from fedxalign.simulations.settings import run_settings

PYPROJECT = Path(CONFIG_DIR).parent / "pyproject.toml"
HEADER = "[tool.flwr.app.config]"
RESULTS_DIR = "results/flwr-run"


def toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v in (float("inf"), float("-inf")):
        return "inf" if v > 0 else "-inf"
    if isinstance(v, (int, float)):
        return repr(v)
    return '"' + str(v).replace('"', '\\"') + '"'


def config_lines(flat: dict) -> str:
    """A flat run config as the lines of a `[tool.flwr.app.config]` table."""
    return "\n".join(f'"{k}" = {toml_value(v)}' for k, v in flat.items()) + "\n"


def generated_block() -> str:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        cfg = compose("simulate", overrides=[f"federation.results_dir={RESULTS_DIR}"])
    flat = run_settings(cfg).to_flat()
    return HEADER + "\n" + config_lines(flat)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--check", action="store_true", help="exit 1 when pyproject.toml is out of date")
    args = p.parse_args(argv)
    text = PYPROJECT.read_text()
    head, sep, _ = text.partition(HEADER)
    if not sep:
        print(f"{PYPROJECT} has no {HEADER} section", file=sys.stderr)
        return 2
    new = head + generated_block()
    if args.check:
        return 0 if new == text else 1
    PYPROJECT.write_text(new)
    print(f"rewrote {HEADER} in {PYPROJECT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
