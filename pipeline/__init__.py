"""Corpus build: manifest -> stages (probe, segment, process, quality, select, tile, caption) -> shards."""

__version__ = "0.1.0"
