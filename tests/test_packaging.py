"""The install layout: every folder of the design installs under fedxalign.*, with its configs."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _setuptools() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_source_folder_is_a_listed_package_under_one_namespace():
    st = _setuptools()
    found = set()
    for name, folder in st["package-dir"].items():
        assert name.startswith("fedxalign."), f"{folder}/ would install as a generic top-level package"
        for d in [ROOT / folder, *(ROOT / folder).rglob("*")]:
            if d.is_dir() and d.name != "__pycache__" and (any(d.glob("*.py")) or any(d.glob("*.yaml"))):
                found.add(".".join([name, *d.relative_to(ROOT / folder).parts]))
    assert found == set(st["packages"])


def test_the_configs_ship_as_package_data():
    from fedxalign.configs import CONFIG_DIR

    assert (Path(CONFIG_DIR) / "simulate.yaml").is_file()
    assert _setuptools()["package-data"]["*"] == ["*.yaml"]


def test_the_site_install_pulls_no_simulation_engine_hydra_or_generator():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = " ".join(project["dependencies"])
    for name in ("ray", "simulation", "hydra", "neurodsp", "matplotlib"):
        assert name not in base, f"{name} is forced onto a site's install"
    assert {"site", "coordinator", "sim"} <= set(project["optional-dependencies"])
