"""Bundled task taxonomy (tasks.yaml) and example manifests, shipped as package data."""

from importlib.resources import files
from pathlib import Path


def bundled(name: str) -> Path:
    """Path of a YAML file shipped in this package (e.g. ``tasks.yaml``)."""
    return Path(str(files(__name__) / name))
