"""Ledger snapshots: records fold into one snapshot, later records apply on top, and records a crash left
behind after their snapshot was written are not applied twice (a retired shard stays retired)."""

from __future__ import annotations

from pipeline.corpus.ledger import FOLDER, Ledger
from pipeline.io.storage import Storage


def _row(sha: str, loc: str, stat: str, shard: str = "") -> dict:
    return {
        "sha256": sha,
        "uri": loc,
        "task": "painting",
        "config_sha": "c",
        "status": "ok",
        "reason": "",
        "run": 1,
        "loc": loc,
        "stat": stat,
        "keys": [f"k{sha}"],
        "shard": shard,
    }


def _shard(name: str) -> dict:
    return {
        "name": name,
        "split": "train",
        "run": 1,
        "samples": 1,
        "bytes": 1,
        "sha256": "x",
        "keys": [],
        "tasks": {},
        "config_sha": "c",
    }


def test_snapshot_folds_records_and_a_crash_leftover_is_not_replayed(tmp_path):
    storage = Storage(tmp_path / "out")
    ledger = Ledger(storage)
    ledger.commit(1, "c", rows=[_row("a", "/v/a.mp4", "s1", "one.tar")], shards=[_shard("one.tar")])
    ledger.commit(1, "c", rows=[_row("b", "/v/b.mp4", "s1", "two.tar")], shards=[_shard("two.tar")])
    first = sorted(storage.list(FOLDER))[0]
    first_bytes = (tmp_path / "out" / FOLDER / first).read_bytes()
    ledger.commit(2, "c", retired=["one.tar"])
    ledger.compact(min_records=64)  # no snapshot yet: folds at once
    names = storage.list(FOLDER)
    assert len(names) == 1 and names[0].startswith("snapshot-")

    ledger.commit(3, "c", rows=[_row("a2", "/v/a.mp4", "s2", "three.tar")], shards=[_shard("three.tar")])
    ledger.compact(min_records=64)  # one record on top of a snapshot: left for later
    assert len(storage.list(FOLDER)) == 2
    # as a crash between writing the snapshot and deleting the records it covers would leave it
    (tmp_path / "out" / FOLDER / first).write_bytes(first_bytes)

    again = Ledger.load(storage)
    assert sorted(again.shards) == ["three.tar", "two.tar"]  # one.tar stays retired
    assert again.known["/v/a.mp4"] == ("s2", "a2") and again.known["/v/b.mp4"] == ("s1", "b")
    assert again.stale() == {}  # a's old row held one.tar, which is gone
    assert {r["sha256"] for r in again.current_rows()} == {"a2", "b"}
    assert again.lookup("a", "/v/a.mp4", "c") is not None  # the superseded row is still known by content
