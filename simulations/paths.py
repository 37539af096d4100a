"""Where the project's Hydra configs live, resolved from this file so any working directory works."""

from pathlib import Path

CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "configs")
