"""Snapshots: each committed run of a corpus is one, a reader's fixed view of it.

``snapshots/NNNNNN.json`` (the run's number) lists the shards live when the run committed, with their sample
counts and checksums; ``dataset.json`` is the latest and names it (``snapshot``). A run never deletes a shard
file that it retires: a trainer that started on an older snapshot keeps reading it. Files no snapshot still
kept refers to are deleted by ``makeanything vacuum`` (pipeline.corpus.vacuum) once the snapshots that listed
them are older than the retention.

Every run that commits (build, refresh even when it changed nothing, caption, curate) gets its own number
and its own snapshot, so ``inspect`` and ``reports/run-NNNN/`` never show two runs under one number.
The snapshot is written before ``dataset.json``: a crash between the two leaves a snapshot that was never
published, which is harmless (its shards are live in the ledger) and its number is not reused.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import fsspec

from pipeline import __version__
from pipeline.corpus.index import NAME as INDEX
from pipeline.corpus.index import write_index
from pipeline.corpus.ledger import Ledger
from pipeline.io.failpoint import failpoint
from pipeline.io.storage import Storage

FOLDER = "snapshots"
FORMAT = "makeanything-snapshot/1"
SHARD_FIELDS = ("name", "split", "samples", "bytes", "sha256")


def path(run: int) -> str:
    return f"{FOLDER}/{run:06d}.json"


def reports(run: int) -> str:
    """The folder of a run's own report (``reports/run-NNNN``), whatever command it was."""
    return f"reports/run-{run:04d}"


def runs(storage: Storage) -> list[int]:
    """Numbers of the snapshots on storage, oldest first."""
    return sorted(int(n[:-5]) for n in storage.list(FOLDER) if n.endswith(".json") and n[:-5].isdigit())


def read(storage: Storage, run: int) -> dict:
    return json.loads(storage.read(path(run)))


def next_run(storage: Storage, ledger: Ledger, index: dict | None) -> int:
    """The number of the run about to start: after every run that left a ledger record, a snapshot or a
    history entry (a no-op refresh leaves only the last two), so no two runs share a number."""
    history = [h["run"] for h in (index or {}).get("history", [])]
    return max([ledger.last_run, *runs(storage), *history, 0]) + 1


def publish(storage: Storage, index: dict, run: int, command: str) -> dict:
    """Commit a run: its snapshot, then ``dataset.json`` naming it (written last: the commit point).
    Returns the index as written."""
    index = {**index, "snapshot": run}
    snap = {
        "format": FORMAT,
        "run": run,
        "command": command,
        "time": time.time(),
        "config_sha": index["config_sha"],
        "samples": index["samples"],
        "shards": [{k: s[k] for k in SHARD_FIELDS} for s in index["shards"]],
    }
    storage.write(path(run), json.dumps(snap, indent=1).encode())
    failpoint("before-index")
    write_index(storage, index)
    return index


def history_entry(run: int, command: str, config_sha: str, started: str, duration_s: float, **more) -> dict:
    """One ``history`` entry of dataset.json (``inspect`` lists them): the same fields for every command."""
    return {
        "run": run,
        "version": __version__,
        "command": command,
        "config_sha": config_sha,
        "started": started,
        "duration_s": duration_s,
        **more,
    }


@dataclass(frozen=True)
class Pinned:
    """The snapshot a reader resolved a corpus to at its start: the shards it reads, by URL or path."""

    root: str
    snapshot: int | None  # None: a corpus written before snapshots existed (dataset.json's list)
    shards: tuple[dict, ...]

    def urls(self, split: str | None = None) -> list[str]:
        return [f"{self.root}/shards/{s['name']}" for s in self.shards if split in (None, s["split"])]

    def describe(self) -> str:
        at = f"snapshot {self.snapshot}" if self.snapshot is not None else "dataset.json (no snapshots)"
        return (
            f"{self.root}: {at}, {len(self.shards)} shards, {sum(s['samples'] for s in self.shards)} samples"
        )


def is_corpus(root: str) -> bool:
    """Whether ``root`` (a folder or URL) holds a dataset.json, i.e. is a corpus rather than loose tars."""
    try:
        fs, p = fsspec.core.url_to_fs(root.rstrip("/"))
        return fs.isfile(f"{p}/{INDEX}")
    except (OSError, ValueError):
        return False


def pin(root: str, snapshot: int | None = None) -> Pinned:
    """Resolve a corpus to a snapshot: ``snapshot`` or the latest one (the one dataset.json names).
    FileNotFoundError names the corpus when it has no dataset.json or no such snapshot."""
    root = root.rstrip("/")
    if snapshot is not None:
        with fsspec.open(f"{root}/{path(snapshot)}", "rb") as f:
            snap = json.loads(f.read())
        return Pinned(root, snapshot, tuple(snap["shards"]))
    with fsspec.open(f"{root}/{INDEX}", "rb") as f:
        index = json.loads(f.read())
    return Pinned(root, index.get("snapshot"), tuple(index["shards"]))
