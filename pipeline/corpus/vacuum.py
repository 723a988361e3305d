"""Vacuum: delete the shard files no kept snapshot refers to, once the retention has passed.

A snapshot stays kept while it is the latest (the one ``dataset.json`` names, or a newer one a crashed run
left) and for ``retention`` seconds after the next snapshot replaced it, so a reader that pinned it just
before a refresh has the whole retention to finish (Delta Lake's VACUUM works the same way). A shard file is
needed while a kept snapshot lists it or the ledger has it live.

Crash safety: expired snapshot files are deleted first, then the files only they listed. Killed at any point,
every snapshot file still on storage has all its shards, and a rerun deletes what is left to delete. The
caller holds the output's lock (no run is committing meanwhile). ``remove_orphan_shards`` is the same rule
with every snapshot kept: what a crashed run published but never recorded, and nobody lists.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from pipeline.config import SnapshotConfig
from pipeline.corpus import snapshots
from pipeline.corpus.index import read_index
from pipeline.corpus.ledger import FOLDER as LEDGER
from pipeline.corpus.ledger import Ledger
from pipeline.corpus.shards import OUR_SHARD
from pipeline.io.failpoint import failpoint
from pipeline.io.storage import Storage

DAY = 86400.0


@dataclass
class VacuumPlan:
    """What a vacuum deletes (or, with --dry-run, would delete)."""

    expired: list[int] = field(default_factory=list)  # snapshot numbers
    kept: list[int] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # shard names under shards/
    bytes: int = 0

    def summary(self) -> dict:
        return {
            "expired_snapshots": self.expired,
            "kept_snapshots": self.kept,
            "shards": self.files,
            "bytes": self.bytes,
        }


def _unlisted(storage: Storage, ledger: Ledger, index: dict | None, keep: list[int]) -> list[str]:
    """Our shard files that neither the ledger (live), dataset.json, nor a snapshot in ``keep`` lists."""
    needed = set(ledger.shards) | {s["name"] for s in (index or {}).get("shards", [])}
    for run in keep:
        needed |= {s["name"] for s in snapshots.read(storage, run)["shards"]}
    return [n for n in storage.list("shards") if OUR_SHARD.match(n) and n not in needed]


def plan(storage: Storage, ledger: Ledger, retention_s: float, now: float | None = None) -> VacuumPlan:
    """Which snapshots expire (replaced more than ``retention_s`` ago) and which files go with them."""
    now = time.time() if now is None else now
    index = read_index(storage)
    found = snapshots.runs(storage)
    published = (index or {}).get("snapshot")
    times = {run: snapshots.read(storage, run)["time"] for run in found}
    out = VacuumPlan()
    for run, later in zip(found, found[1:] + [None]):
        replaced_at = times[later] if later is not None else None
        old = published is not None and run < published and replaced_at is not None
        (out.expired if old and now - replaced_at >= retention_s else out.kept).append(run)
    out.files = _unlisted(storage, ledger, index, out.kept)
    out.bytes = sum(storage.size(f"shards/{n}") for n in out.files)
    return out


def vacuum(
    storage: Storage, ledger: Ledger, retention_s: float, dry_run: bool = False, now: float | None = None
) -> VacuumPlan:
    """Delete what ``plan`` finds (nothing with ``dry_run``); the caller holds the output's lock."""
    todo = plan(storage, ledger, retention_s, now)
    if dry_run:
        return todo
    for run in todo.expired:  # first the snapshots: a snapshot on storage always has all its files
        storage.remove(snapshots.path(run))
        failpoint("vacuum-snapshot-removed")
    for name in todo.files:
        storage.remove(f"shards/{name}")
        failpoint("vacuum-shard-removed")
    return todo


def after_run(storage: Storage, ledger: Ledger, cfg: SnapshotConfig) -> VacuumPlan | None:
    """The vacuum a build, refresh or caption run ends with under ``vacuum: auto`` (None when off)."""
    return vacuum(storage, ledger, cfg.retention_days * DAY) if cfg.vacuum == "auto" else None


def remove_orphan_shards(storage: Storage, ledger: Ledger) -> list[str]:
    """Delete shards a crashed run published but never recorded (their sources are redone, same keys) and
    no snapshot lists, and the temporary file of a ledger record it was writing when killed."""
    orphans = _unlisted(storage, ledger, read_index(storage), snapshots.runs(storage))
    for name in orphans:
        storage.remove(f"shards/{name}")
    for name in storage.list(LEDGER):
        if name.startswith(".") and name.endswith(".tmp"):
            storage.remove(f"{LEDGER}/{name}")
    return orphans
