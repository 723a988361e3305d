"""The ledger: what became of each (source content hash, config hash) pair, and which shards hold its keys.

An append-only log of small JSON records under ``DIR/ledger/``, each written atomically (local rename or
one S3 PUT), so it works the same on any fsspec storage. A shard and the rows of the sources it holds are
one record, written only after the shard itself is in place: a shard that no record names was left by a
crash and is deleted on the next start (its sources are redone, with the same keys).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from pipeline.storage import Storage

FOLDER = "ledger"


def ident(sha256: str, uri: str, config_sha: str) -> str:
    """Ledger key: the content hash (the URI when the content could not be read) plus the config hash."""
    return f"{sha256 or 'uri:' + uri}@{config_sha}"


@dataclass
class Ledger:
    storage: Storage
    rows: dict[str, dict] = field(default_factory=dict)
    shards: dict[str, dict] = field(default_factory=dict)
    config_sha: str | None = None  # the config of the latest record: the dataset's current config
    last_run: int = 0
    _seq: int = 0

    @classmethod
    def load(cls, storage: Storage) -> "Ledger":
        ledger = cls(storage)
        for name in storage.list(FOLDER):
            if name.endswith(".json"):
                ledger._apply(json.loads(storage.read(f"{FOLDER}/{name}")))
        return ledger

    def _apply(self, rec: dict) -> None:
        for row in rec["rows"]:
            self.rows[ident(row["sha256"], row["uri"], row["config_sha"])] = row
        for shard in rec["shards"]:
            self.shards[shard["name"]] = shard
        for name in rec["retired"]:
            self.shards.pop(name, None)
        self.config_sha, self.last_run = rec["config_sha"], max(self.last_run, rec["run"])

    def lookup(self, sha256: str, uri: str, config_sha: str) -> dict | None:
        return self.rows.get(ident(sha256, uri, config_sha))

    def live_shards(self) -> list[dict]:
        """Shards of the current config, in the order they were written."""
        return sorted((s for s in self.shards.values() if s["config_sha"] == self.config_sha),
                      key=lambda s: (s["run"], s["name"]))

    def commit(self, run: int, config_sha: str, rows: list[dict] = (), shards: list[dict] = (),
               retired: list[str] = ()) -> None:
        """Write one record atomically, then apply it in memory."""
        self._seq += 1
        rec = {"run": run, "config_sha": config_sha, "time": time.time(), "rows": list(rows),
               "shards": list(shards), "retired": list(retired)}
        self.storage.write(f"{FOLDER}/r{run:05d}-{self._seq:06d}.json", json.dumps(rec).encode())
        self._apply(rec)
