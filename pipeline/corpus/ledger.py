"""The ledger: what became of each (source content hash, config hash) pair, and which shards hold its keys.

An append-only log of small JSON records under ``DIR/ledger/``, each written atomically (local rename or
one S3 PUT), so it works the same on any fsspec storage. A shard and the rows of the sources it holds are
one record, written only after the shard itself is in place: a shard that no record names was left by a
crash and is deleted on the next start (its sources are redone, with the same keys).

Rows also remember where a source was read (``loc``: absolute path or URL) and its metadata signature
(``stat``), so a refresh finds unchanged sources without reading them, and a source whose content changed
supersedes its old row (whose samples are then retired). ``compact`` folds the records into one snapshot
so that a ledger of 100,000 sources loads with a few reads, not 100,000.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from pipeline.io.storage import Storage

FOLDER = "ledger"
SNAPSHOT = "snapshot-"


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
    known: dict[str, tuple[str, str]] = field(default_factory=dict)  # loc -> (stat, sha256), latest
    current: dict[tuple[str, str], str] = field(default_factory=dict)  # (loc, config) -> row ident, latest
    last_record: str = ""  # name of the latest record applied (snapshots cover records up to it)
    _seq: int = 0

    @classmethod
    def load(cls, storage: Storage) -> Ledger:
        ledger = cls(storage)
        names = [n for n in storage.list(FOLDER) if n.endswith(".json")]
        snaps = sorted(n for n in names if n.startswith(SNAPSHOT))
        if snaps:
            ledger._restore(json.loads(storage.read(f"{FOLDER}/{snaps[-1]}")))
        for name in sorted(n for n in names if n.startswith("r") and n > ledger.last_record):
            ledger._apply(json.loads(storage.read(f"{FOLDER}/{name}")))
            ledger.last_record = name
        return ledger

    def _apply(self, rec: dict) -> None:
        for row in rec["rows"]:
            key = ident(row["sha256"], row["uri"], row["config_sha"])
            self.rows[key] = row
            if row.get("loc"):
                self.current[(row["loc"], row["config_sha"])] = key
                if row.get("stat") and row["sha256"]:
                    self.known[row["loc"]] = (row["stat"], row["sha256"])
        for seen in rec.get("seen", []):  # duplicates: no row of their own, but their signature is known
            self.known[seen["loc"]] = (seen["stat"], seen["sha256"])
        for shard in rec["shards"]:
            self.shards[shard["name"]] = shard
        for name in rec["retired"]:
            self.shards.pop(name, None)
        self.config_sha, self.last_run = rec["config_sha"], max(self.last_run, rec["run"])

    def _restore(self, snap: dict) -> None:
        self.rows, self.shards = snap["rows"], snap["shards"]
        self.config_sha, self.last_run, self.last_record = (
            snap["config_sha"],
            snap["last_run"],
            snap["last_record"],
        )
        self.known = {loc: (stat, sha) for loc, stat, sha in snap["known"]}
        self.current = {(loc, cfg): key for loc, cfg, key in snap["current"]}

    def lookup(self, sha256: str, uri: str, config_sha: str) -> dict | None:
        return self.rows.get(ident(sha256, uri, config_sha))

    def live_shards(self) -> list[dict]:
        """Shards of the current config, in the order they were written."""
        return sorted(
            (s for s in self.shards.values() if s["config_sha"] == self.config_sha),
            key=lambda s: (s["run"], s["name"]),
        )

    def current_rows(self) -> list[dict]:
        """Rows of the current config, without those a changed source superseded."""
        return [
            r
            for k, r in self.rows.items()
            if r["config_sha"] == self.config_sha and not self._superseded(k, r)
        ]

    def _superseded(self, key: str, row: dict) -> bool:
        return bool(row.get("loc")) and self.current.get((row["loc"], row["config_sha"]), key) != key

    def stale(self) -> dict[str, list[str]]:
        """Live shards holding samples of superseded rows (the old content of a changed source): shard
        name -> those keys. Empty once the shards are repacked without them."""
        out: dict[str, list[str]] = {}
        for key, row in self.rows.items():
            shard = row.get("shard")
            if row["keys"] and shard in self.shards and self._superseded(key, row):
                out.setdefault(shard, []).extend(row["keys"])
        return out

    def commit(
        self,
        run: int,
        config_sha: str,
        rows: list[dict] = (),
        shards: list[dict] = (),
        retired: list[str] = (),
        seen: list[dict] = (),
    ) -> None:
        """Write one record atomically, then apply it in memory. ``seen``: {loc, stat, sha256} of sources
        that have no row of their own (duplicates), so that a refresh need not read them again."""
        self._seq += 1
        rec = {
            "run": run,
            "config_sha": config_sha,
            "time": time.time(),
            "rows": list(rows),
            "shards": list(shards),
            "retired": list(retired),
            "seen": list(seen),
        }
        name = f"r{run:05d}-{self._seq:06d}.json"
        self.storage.write(f"{FOLDER}/{name}", json.dumps(rec).encode())
        self._apply(rec)
        self.last_record = max(self.last_record, name)

    def compact(self, min_records: int = 64) -> None:
        """Fold every record into one snapshot (written atomically), then delete the records it covers and
        older snapshots; done once ``min_records`` records piled up (or there is no snapshot yet), so a
        run that added a few rows does not rewrite a large snapshot. A crash in between leaves records the
        snapshot already covers: skipped on load."""
        names = self.storage.list(FOLDER)
        records = sum(1 for n in names if n.startswith("r"))
        if not records or (records < min_records and any(n.startswith(SNAPSHOT) for n in names)):
            return
        snap = {
            "rows": self.rows,
            "shards": self.shards,
            "config_sha": self.config_sha,
            "last_run": self.last_run,
            "last_record": self.last_record,
            "known": [[loc, *v] for loc, v in self.known.items()],
            "current": [[loc, cfg, key] for (loc, cfg), key in self.current.items()],
        }
        snap_name = f"{SNAPSHOT}{self.last_record}"
        self.storage.write(f"{FOLDER}/{snap_name}", json.dumps(snap).encode())
        for n in names:
            if (n.startswith("r") and n <= self.last_record) or (n.startswith(SNAPSHOT) and n < snap_name):
                self.storage.remove(f"{FOLDER}/{n}")
