"""Retire the samples of sources whose content changed: each live shard holding such samples is copied,
without them, into a new shard of this run, and the new shard replaces the old one in one ledger record.

Finished shards are never rewritten: the old file stays until ``dataset.json`` no longer lists it and is
deleted then (a crash before that leaves a shard no record names, which the next start removes). A crash
before the record leaves the stale samples live; the next run finds them again (``Ledger.stale``).
``replace_shard`` is the swap itself; `makeanything caption` uses it too (pipeline.run.recaption).
"""

from __future__ import annotations

import io
import json
import tarfile
from collections import Counter
from pathlib import Path

from pipeline.corpus.ledger import Ledger
from pipeline.corpus.schema import conform
from pipeline.corpus.shards import Publish, Sample, ShardWriter, shard_prefix
from pipeline.io.storage import Storage

REPACK_LANE = 999  # shard names {split}-r{run}-999-{n}: never a lane the committer uses in the same run


def shard_samples(data: bytes, drop: set[str] = frozenset()) -> list[Sample]:
    """The samples of a shard, in shard order, without the keys in ``drop``. Each json passes ``conform``, so
    samples written before a nullable field existed get it as null (SchemaError if one is off the schema)."""
    parts: dict[str, dict[str, bytes]] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for m in tar.getmembers():
            key, _, ext = m.name.partition(".")
            if key not in drop:
                parts.setdefault(key, {})[ext] = tar.extractfile(m).read()
    return [
        Sample(key=k, jpg=p["jpg"], caption=p["txt"].decode(), meta=conform(json.loads(p["json"])))
        for k, p in parts.items()
    ]


def replace_shard(
    storage: Storage,
    ledger: Ledger,
    run: int,
    staging: Path,
    old: dict,
    samples: list[Sample],
    lane: int,
    n: int,
    publish: Publish | None = None,
) -> str:
    """Write ``samples`` as shard ``{split}-r{run}-{lane}-{n}`` and swap it for the live shard ``old`` in one
    ledger record (the rows of its sources follow it); returns the new name. ``publish`` puts the finished
    tar in place (default: into ``shards/``)."""
    writer = ShardWriter(
        staging,
        prefix=shard_prefix(old["split"], run, lane),
        samples_per_shard=len(samples),
        start_index=n,
        publish=publish or (lambda tmp, new: storage.put(tmp, f"shards/{new}")),
    )
    info = writer.write_group(samples)
    assert info is not None  # samples_per_shard == len(samples): the group fills the shard
    tasks = Counter(s.meta["task"]["id"] for s in samples)
    shard = info.record(old["split"], run, tasks, old["config_sha"])
    keep = set(info.keys)
    rows = [
        {**r, "shard": info.name}
        for r in ledger.rows.values()
        if r.get("shard") == old["name"] and set(r["keys"]) <= keep and r["keys"]
    ]
    ledger.commit(run, old["config_sha"], rows=rows, shards=[shard], retired=[old["name"]])
    return info.name


def repack_stale(storage: Storage, ledger: Ledger, run: int, staging: Path) -> list[str]:
    """Repack every live shard that holds superseded samples; returns the names of the retired shards
    (their files are deleted by the caller once the new dataset.json is written)."""
    retired = []
    for n, (name, stale_keys) in enumerate(sorted(ledger.stale().items())):
        old = ledger.shards[name]
        kept = shard_samples(storage.read(f"shards/{name}"), set(stale_keys))
        if kept:
            replace_shard(storage, ledger, run, staging, old, kept, REPACK_LANE, n)
        else:
            ledger.commit(run, old["config_sha"], retired=[name])
        retired.append(name)
    return retired
