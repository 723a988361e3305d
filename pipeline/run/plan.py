"""Which sources a run processes, decided as a stream: each source's signature is taken (content hashed
only when new or changed), duplicates dropped, and what the ledger already holds skipped, while the
sources decided so far are already being processed. Memory stays bounded by the prefetch window, not by
the manifest's length, and the work starts with the first new source, not after the last is hashed."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

from pipeline.config import BuildConfig
from pipeline.corpus.ledger import Ledger
from pipeline.corpus.source_result import SourceResult
from pipeline.intake.fetch import Prepared, location, prepare
from pipeline.work import Source

PREFETCH = 256  # sources being prepared ahead of the one the plan looks at
RESTAT_BATCH = 1000  # signature updates per ledger record


def duplicate(src: Source, sha: str, first: Source) -> SourceResult:
    return SourceResult.of(
        src,
        sha,
        "duplicate",
        f"duplicate of sources[{first.entry}] ({first.uri}): same content, processed once",
    )


def _windowed(
    submit: Callable[[Source], object], result: Callable[[object], Prepared], sources: Iterable[Source]
) -> Iterator[Prepared]:
    """Results in source order with at most PREFETCH submitted ahead."""
    ahead: deque = deque()
    for src in sources:
        ahead.append(submit(src))
        if len(ahead) >= PREFETCH:
            yield result(ahead.popleft())
    while ahead:
        yield result(ahead.popleft())


def prepared(
    config: BuildConfig, sources: Iterable[Source], ledger: Ledger, verify_content: bool
) -> Iterator[Prepared]:
    """Signatures (and hashes of new or changed content), in order: on the given cluster (its workers may
    see paths the driver does not), else in driver threads (I/O-bound), so that a LocalCluster is started
    only when there is work."""

    def args(src: Source) -> tuple:
        return src, ledger.known.get(location(src))

    if config.cluster.scheduler:
        from distributed import Client  # only here: a local run may never need Dask

        with Client(config.cluster.scheduler) as client:
            yield from _windowed(
                lambda s: client.submit(prepare, *args(s), verify_content=verify_content, pure=False),
                lambda f: f.result(),
                sources,
            )
        return
    with ThreadPoolExecutor(max_workers=8) as pool:
        yield from _windowed(
            lambda s: pool.submit(prepare, *args(s), verify_content), lambda f: f.result(), sources
        )


class Plan:
    """Filters a stream of prepared sources down to those to process; counts and records the rest."""

    def __init__(
        self,
        ledger: Ledger,
        run: int,
        config_sha: str,
        retry_failed: bool,
        dropped: Callable[[SourceResult], None],
        skipped: Callable[[], None],
    ) -> None:
        self.ledger, self.run, self.config_sha, self.retry_failed = ledger, run, config_sha, retry_failed
        self.dropped = dropped  # called with the report row of an unusable or duplicate source
        self.on_skip = skipped  # called for each source the ledger already holds
        self.seen: dict[str, Source] = {}
        self.skipped = self.todo = 0
        self._restat: list[dict] = []
        self._seen_dups: list[dict] = []

    def select(self, stream: Iterable[Prepared]) -> Iterator[Prepared]:
        for p in stream:
            if self._wanted(p):
                self.todo += 1
                yield p
        self.flush()

    def _wanted(self, p: Prepared) -> bool:
        src = p.source
        if p.error:
            self.dropped(SourceResult.of(src, "", "rejected", p.error))
            return False
        ident = p.sha256 or p.loc  # the first listing of each file (by location and by content) is kept
        if ident in self.seen:
            if not p.hashed and p.sha256:  # known by its signature: an earlier run reported it
                self.skipped += 1  # unchanged since: not news for a cron job
                self.on_skip()
                return False
            self.dropped(duplicate(src, p.sha256, self.seen[ident]))
            if p.hashed and p.stat and p.sha256:  # read now: remember its signature, not to read it again
                self._seen_dups.append({"loc": p.loc, "stat": p.stat, "sha256": p.sha256})
                self._flush_when_full()
            return False
        self.seen[ident] = src
        row = self.ledger.lookup(p.sha256, src.uri, self.config_sha)
        unhashed_remote = not p.sha256 and p.stat and (row is None or row.get("stat") != p.stat)
        if row is None or unhashed_remote or (row["status"] == "failed" and self.retry_failed):
            return True
        self.skipped += 1
        self.on_skip()
        if p.hashed and p.stat and (row.get("stat"), row.get("loc")) != (p.stat, p.loc):
            self._restat.append({**row, "loc": p.loc, "stat": p.stat})  # read again, found unchanged
            self._flush_when_full()
        return False

    def _flush_when_full(self) -> None:
        if len(self._restat) + len(self._seen_dups) >= RESTAT_BATCH:
            self.flush()

    def flush(self) -> None:
        """Record the signatures of sources that were read but had not changed, or were duplicates."""
        if self._restat or self._seen_dups:
            self.ledger.commit(self.run, self.config_sha, rows=self._restat, seen=self._seen_dups)
            self._restat, self._seen_dups = [], []
