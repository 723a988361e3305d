"""MakeAnything: procedural-sequence datasets and models. The CLI lives in makeanything.cli."""

from pipeline import __version__

__all__ = ["__version__"]
