"""The project's Hydra configs, shipped as package data of `fedxalign.configs` and found through importlib.resources,
so every command works from an installed wheel as from the source tree, in any working directory."""

from importlib.resources import files

# pip installs packages unzipped, so the resource folder is a real directory Hydra can search
CONFIG_DIR = str(files(__name__))
