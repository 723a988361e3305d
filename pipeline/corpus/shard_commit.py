"""Streams source results into per-split shards; a shard and the ledger rows of its sources commit together.

Order per shard: tar complete in staging -> published under ``shards/`` -> one ledger record naming the
shard and its sources. Sources without samples (rejected, failed) need no shard and are recorded at once.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from pipeline.config import BuildConfig
from pipeline.corpus.index import split_of
from pipeline.corpus.ledger import Ledger
from pipeline.corpus.shards import ShardInfo, ShardWriter, shard_prefix
from pipeline.corpus.source_result import SourceResult
from pipeline.io.failpoint import failpoint
from pipeline.io.storage import Storage


class ShardCommitter:
    """Shard names (pipeline.corpus.shards.shard_prefix) never collide across runs; ``train_lanes``
    train shards are filled side by side (sources dealt round-robin) so a run can reach ``min_shards``."""

    def __init__(
        self,
        storage: Storage,
        ledger: Ledger,
        run: int,
        config: BuildConfig,
        staging: Path,
        train_lanes: int = 1,
    ) -> None:
        self.storage, self.ledger, self.run, self.staging = storage, ledger, run, staging
        self.config_sha, self.val_fraction = config.sha(), config.shards.val_fraction
        self.per_shard = config.shards.samples_per_shard
        self.lanes = {"train": train_lanes, "val": 1}
        self.dealt: Counter = Counter()
        self.writers: dict[tuple[str, int], ShardWriter] = {}
        self.pending: dict[tuple[str, int], list[dict]] = {}

    def _publish(self, tmp: Path, name: str) -> None:
        self.storage.put(tmp, f"shards/{name}")
        failpoint("shard-published")

    def _row(self, res: SourceResult, loc: str, stat: str) -> dict:
        source = res.samples[0].meta["source"] if res.samples else {}
        return {
            "sha256": res.sha256,
            "uri": res.uri,
            "task": res.task,
            "config_sha": self.config_sha,
            "status": res.status,
            "reason": res.reason,
            "run": self.run,
            "loc": loc,
            "stat": stat,
            "keys": [s.key for s in res.samples] if res.status == "ok" else [],
            "license": source.get("license"),
            "attribution": source.get("attribution"),
        }

    def _commit(self, rows: list[dict], shard: dict | None = None) -> None:
        self.ledger.commit(self.run, self.config_sha, rows=rows, shards=[shard] if shard else [])
        failpoint("committed")

    def _writer(self, lane: tuple[str, int]) -> ShardWriter:
        if lane not in self.writers:
            self.writers[lane] = ShardWriter(
                self.staging,
                prefix=shard_prefix(lane[0], self.run, lane[1]),
                samples_per_shard=self.per_shard,
                publish=self._publish,
            )
        return self.writers[lane]

    def _shard_done(self, lane: tuple[str, int], info: ShardInfo) -> None:
        split, rows = lane[0], [{**r, "shard": info.name} for r in self.pending.pop(lane)]
        tasks = Counter(r["task"] for r in rows for _ in r["keys"])
        self._commit(rows, info.record(split, self.run, tasks, self.config_sha))

    def add(self, res: SourceResult, loc: str = "", stat: str = "") -> None:
        """``loc``, ``stat``: where the source was read and its metadata signature (see pipeline.intake.fetch)."""
        if res.status != "ok" or not res.samples:
            self._commit([self._row(res, loc, stat)])
            return
        split = split_of(res.sha256, self.val_fraction)
        lane = (split, self.dealt[split] % self.lanes[split])
        self.dealt[split] += 1
        self.pending.setdefault(lane, []).append(self._row(res, loc, stat))
        info = self._writer(lane).write_group(res.samples)
        if info is not None:
            self._shard_done(lane, info)

    def close(self) -> list[ShardInfo]:
        """Publish and record the partly filled shards; returns every shard written in this run."""
        done: list[ShardInfo] = []
        for lane, writer in sorted(self.writers.items()):
            before = len(writer.finished)
            writer.close()
            if len(writer.finished) > before:
                self._shard_done(lane, writer.finished[-1])
            done += writer.finished
        return done
