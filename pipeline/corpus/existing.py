"""The one check every command that reads a built corpus makes first (inspect, review, curate, caption):
is there a corpus at this path? It creates nothing, so a mistyped path leaves no empty folder behind."""

from __future__ import annotations

from pathlib import Path

from pipeline.corpus.index import NAME, read_index
from pipeline.io.storage import Storage


class NotACorpus(ValueError):
    """The path holds no corpus (no folder, a file, or no dataset.json); the message names the path."""


def open_corpus(url: str | Path) -> tuple[Storage, dict]:
    """(storage, dataset.json) of the corpus at ``url``; NotACorpus when there is none."""
    storage = Storage(url, create=False)
    if storage.local:
        root = Path(storage.root)
        if not root.exists():
            raise NotACorpus(f"{url}: no such folder (give the folder a build wrote)")
        if not root.is_dir():
            raise NotACorpus(f"{url}: is a file, not a corpus folder (give the folder a build wrote)")
    index = read_index(storage)
    if index is None:
        raise NotACorpus(f"{storage}: no {NAME} (not a corpus, or its first run never completed)")
    return storage, index
