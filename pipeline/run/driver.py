"""The build driver: resolve the manifest, skip what the ledger says is done, fan the rest out to Dask
workers, stream results into shards, then write the run report and ``dataset.json`` (last).

`build` and `refresh` are the same job: on an empty output everything is new. Sources are independent
Dask tasks; at most ``workers x in_flight_per_worker`` run or wait at once, so the driver's memory stays
bounded however long the manifest is. Only the driver writes shards, under the output's lock.
"""

from __future__ import annotations

import itertools
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from pipeline import __version__
from pipeline.caption.cache import default_cache_dir
from pipeline.caption.stage import Captioner
from pipeline.clip import plan_clip
from pipeline.config import BuildConfig
from pipeline.corpus import snapshots
from pipeline.corpus.card import write_card
from pipeline.corpus.curation import Curation
from pipeline.corpus.curation import load as load_curation
from pipeline.corpus.index import make_index, read_index
from pipeline.corpus.ledger import Ledger
from pipeline.corpus.retire import repack_stale
from pipeline.corpus.shard_commit import ShardCommitter
from pipeline.corpus.source_result import SourceResult
from pipeline.corpus.vacuum import after_run, remove_orphan_shards
from pipeline.intake.fetch import Prepared
from pipeline.intake.manifest import load_manifest
from pipeline.intake.scratch import ScratchCache
from pipeline.io.lock import OutputLock
from pipeline.io.storage import Storage
from pipeline.report.run_report import RunReport, corpus_report
from pipeline.run.cluster import mark_last, source_executor
from pipeline.run.plan import Plan, duplicate, prepared
from pipeline.run.worker import run_fetched
from pipeline.stages.chain import build_stages
from pipeline.taxonomy import Taxonomy
from pipeline.work import Source

NO_CLIP = "CLIP stage not loaded: no source to process in this run."


class ConfigChanged(ValueError):
    """The output was built under another config; reprocessing everything needs an explicit --rebuild."""


@dataclass
class BuildResult:
    report: dict
    out: Path | str
    summary: dict = field(default_factory=dict)


def _curated(
    todo: Iterator[Prepared], curation: Curation, dropped: Callable[[SourceResult], None]
) -> Iterator[Prepared]:
    """Sources a curator dropped (by source or task) are not built; the report says whose decision it was.
    Nothing goes to the ledger, so undoing the decision lets the next refresh build them."""
    for p in todo:
        src, sha = p.source, p.sha256
        d = curation.drops_source(src.task.id, {n for n in (src.id, sha, sha[:16], src.uri) if n})
        if d is None:
            yield p
        else:
            dropped(
                SourceResult.of(
                    src,
                    sha,
                    "rejected",
                    f"dropped by curation ({d.selector[0]} {d.selector[1]}, {d.by}, {d.at}): {d.reason}",
                )
            )


def _retire_old_config(ledger: Ledger, run: int, config_sha: str) -> list[str]:
    """After a --rebuild under a new config is indexed, retire the shards of the old one (their files stay
    for the readers of older snapshots until a vacuum deletes them)."""
    old = sorted(n for n, s in ledger.shards.items() if s["config_sha"] != config_sha)
    if old:
        ledger.commit(run, config_sha, retired=old)
    return old


def _train_lanes(config: BuildConfig, ledger: Ledger) -> int:
    """Train shards written side by side this run: enough to reach ``min_shards`` (so ranks x dataloader
    workers never starve), sources dealt round-robin so the shards come out balanced."""
    have = sum(1 for x in ledger.live_shards() if x["split"] == "train")
    return max(1, config.shards.min_shards - have)


def _lost(src: Source, sha: str, err: BaseException) -> SourceResult:
    """A task Dask gave up on (e.g. its worker died on it repeatedly) is a failed source, not a failed run."""
    return SourceResult.of(src, sha, "failed", f"worker lost: {type(err).__name__}: {err}")


class _Run:
    """What the driver learns while results stream in: content hashed on a worker (remote sources) may turn
    out to be known already (unchanged bytes under a new signature) or a duplicate of this run's."""

    def __init__(
        self,
        ledger: Ledger,
        committer: ShardCommitter,
        report: RunReport,
        config_sha: str,
        seen: dict[str, Source],
    ) -> None:
        self.ledger, self.committer, self.report, self.config_sha = ledger, committer, report, config_sha
        self.seen = seen  # content hash -> the first source with it (shared with the plan)
        self.processed = self.unchanged = 0  # sources whose task came back; of those, known after all

    def add(self, p: Prepared, res: SourceResult) -> None:
        self.processed += 1
        if res.sha256 and not p.sha256:  # hashed on the worker
            prior = self.ledger.lookup(res.sha256, res.uri, self.config_sha)
            if prior is not None and prior["status"] == res.status:
                self.committer.ledger.commit(
                    self.committer.run, self.config_sha, rows=[{**prior, "loc": p.loc, "stat": p.stat}]
                )
                self.unchanged += 1
                return
            if res.sha256 in self.seen:
                self.report.add(duplicate(p.source, res.sha256, self.seen[res.sha256]))
                return
        self.seen.setdefault(res.sha256, p.source)
        self.committer.add(res, p.loc, p.stat)
        self.report.add(res)


def _results(
    pool: Executor,
    workers: int,
    todo: Iterator[Prepared],
    stages: dict[tuple[str, bool], list],
    config: BuildConfig,
    cache: str,
) -> Iterator[tuple[Prepared, SourceResult]]:
    """Bounded-window submit to ``pool`` (``workers`` tasks at once); results as they finish (those that
    finish together in the order they were submitted). ``stages[kind, last]``: the stages of a source kind,
    for the last sources of the run (which leave other workers idle) or the others."""
    window = workers * config.cluster.in_flight_per_worker
    pending = mark_last(todo, max(1, workers - 1))
    running: dict[Future, tuple[int, Prepared]] = {}
    submitted = itertools.count()

    def submit(marked: tuple[Prepared, bool] | None) -> None:
        if marked is not None:
            item, last = marked
            fut = pool.submit(
                run_fetched, item.source, item.sha256, stages[item.source.kind, last], config, cache
            )
            running[fut] = next(submitted), item

    for _ in range(window):
        submit(next(pending, None))
    while running:
        finished, _ = wait(running, return_when=FIRST_COMPLETED)
        for fut in sorted(finished, key=lambda f: running[f][0]):
            item = running.pop(fut)[1]
            try:
                res: SourceResult = fut.result()
            except Exception as e:  # noqa: BLE001 - KilledWorker and the like: record and go on
                res = _lost(item.source, item.sha256, e)
            yield item, res
            submit(next(pending, None))


def _with_samples(done: tuple[Prepared, SourceResult], samples: list) -> tuple[Prepared, SourceResult]:
    done[1].samples = samples
    return done


def _commit_all(
    results: Iterator[tuple[Prepared, SourceResult]], captioner: Captioner | None, run: _Run, bar: tqdm
) -> None:
    """Results (captioned first when a VLM is configured) into shards and the report, as they come."""
    if captioner is not None:
        results = captioner.stream(results, lambda done: done[1].samples, _with_samples)
    for item, res in results:
        run.add(item, res)
        bar.update(1)
        bar.set_postfix(samples=sum(run.report.per_task.values()))


def _write_report(
    storage: Storage, report: RunReport, header: dict, shards: list, wall: float, run: int
) -> tuple[dict, str]:
    """The run's report, contact sheets included, in ``reports/run-NNNN/`` (kept) and at the root (the latest;
    the root report.md is rewritten once the index says what the corpus holds). Returns report.json's data
    and the run's report.md."""
    with tempfile.TemporaryDirectory(prefix="makeanything-report-") as tmp:
        data = report.write(Path(tmp), header, shards, wall)
        names = sorted(p.name for p in Path(tmp).iterdir())
        storage.upload_folder(Path(tmp), names, prefix=snapshots.reports(run))
        storage.upload_folder(Path(tmp), [n for n in names if n != "report.md"])
        return data, (Path(tmp) / "report.md").read_text()


def build(
    manifest: str | Path,
    out: str | Path,
    config: BuildConfig,
    progress: bool = True,
    *,
    retry_failed: bool = False,
    rebuild: bool = False,
    verify_content: bool = False,
) -> BuildResult:
    """Build or refresh the corpus of ``manifest`` in ``out`` (a folder or an fsspec URL such as s3://b/p).

    Sources whose metadata signature matches the ledger are not read; ``verify_content`` hashes every
    source again. Manifest and config errors raise before any work starts; a second job on the same
    output raises LockBusy.
    """
    t0, started = time.perf_counter(), time.strftime("%Y-%m-%dT%H:%M:%S%z")
    taxonomy = Taxonomy.load(config.taxonomy)
    sources = load_manifest(manifest, taxonomy)
    storage = Storage(out)
    cache = config.cache.dir or (
        f"{storage.root}/cache" if storage.local else str(Path(tempfile.gettempdir()) / "makeanything-cache")
    )
    config_sha = config.sha()
    # A required model is checked before any work (ClipUnavailable); otherwise torch is loaded only when a
    # source is to be processed, so that a refresh with nothing new costs seconds, not a torch import.
    clip = plan_clip(config.clip) if config.clip.require else None
    with OutputLock(storage) as lock:
        if lock.took_over:
            print(
                f"took over a stale lock of pid {lock.took_over.get('pid')} (no longer running)",
                file=sys.stderr,
            )
        ledger = Ledger.load(storage)
        curation = load_curation(storage)  # raises CurationError (exit 2) before any work
        if ledger.config_sha not in (None, config_sha) and not rebuild:
            raise ConfigChanged(
                f"{storage}: built under config {ledger.config_sha[:12]}, this config is "
                f"{config_sha[:12]}; pass --rebuild to reprocess every listed source under it "
                f"(the old config's shards are retired when that run completes)"
            )
        orphans = remove_orphan_shards(storage, ledger)
        previous = read_index(storage)
        run = snapshots.next_run(storage, ledger, previous)
        staging = storage.staging()
        report = RunReport()
        captioner = (
            Captioner(config.caption, taxonomy, default_cache_dir(config.caption, storage))
            if config.caption.enabled
            else None
        )
        try:
            with tqdm(total=len(sources), desc="sources", unit="src", disable=not progress) as bar:

                def dropped(row: SourceResult) -> None:
                    report.add(row)
                    bar.update(1)

                plan = Plan(ledger, run, config_sha, retry_failed, dropped, lambda: bar.update(1))
                todo = _curated(
                    plan.select(prepared(config, sources, ledger, verify_content)), curation, dropped
                )
                committer = ShardCommitter(
                    storage, ledger, run, config, staging, _train_lanes(config, ledger)
                )
                results = _Run(ledger, committer, report, config_sha, plan.seen)
                # A refresh with nothing new or changed never starts a cluster; one with a source or two
                # to process runs them on the driver's threads (cluster.processes: null), without Dask.
                ahead = list(itertools.islice(todo, config.cluster.workers + 1))
                if ahead:
                    clip = clip or plan_clip(config.clip)
                    if progress:  # once per run, one line; --quiet: the report has it
                        print(clip.notice, file=sys.stderr)
                    threads = {False: 1, True: config.cluster.decode_threads}
                    stages = {
                        (kind, last): build_stages(config, clip.spec, kind, threads[last])
                        for kind in {s.kind for s in sources}
                        for last in threads
                    }
                    with source_executor(
                        config,
                        clip.ready,
                        len(sources),
                        len(ahead) <= config.cluster.workers,
                        (config.clip.resources or None) if clip.ready else None,
                    ) as (pool, workers):
                        done = _results(pool, workers, itertools.chain(ahead, todo), stages, config, cache)
                        _commit_all(done, captioner, results, bar)
            shards = committer.close()
            skipped = plan.skipped + results.unchanged
            stale = repack_stale(storage, ledger, run, staging)
        finally:
            storage.clear_staging(staging)
            if Path(cache).is_dir():
                ScratchCache(cache, config.cache.max_bytes).close()
        header = {
            "version": __version__,
            "manifest": str(manifest),
            "config_sha": config_sha,
            "clip": clip.message if clip else NO_CLIP,
            "caption": captioner.summary() if captioner else None,
            "config": config.model_dump(mode="json"),
            "refresh": {
                "run": run,
                "skipped": skipped,
                "removed_orphan_shards": orphans,
                "retired_stale_shards": stale,
            },
        }
        data, run_md = _write_report(storage, report, header, shards, time.perf_counter() - t0, run)
        t = data["totals"]
        counts = {
            "sources": len(sources),
            "processed": results.processed - results.unchanged,
            "skipped": skipped,
            **{k: t[k] for k in ("ok", "rejected", "failed", "duplicates")},
            "new_samples": t["samples"],
            "shards": len(shards),
        }
        command = "refresh" if previous else "build"
        history = (previous or {}).get("history", []) + [
            snapshots.history_entry(
                run,
                command,
                config_sha,
                started,
                data["duration_s"],
                manifest=str(manifest),
                counts=counts,
            )
        ]
        index = make_index(
            ledger, config.model_dump(mode="json", exclude={"cluster", "cache"}), history, curation
        )
        write_card(storage, index, taxonomy)
        storage.write("report.md", corpus_report({**index, "snapshot": run}, run_md, run).encode())
        # the stale shards are no longer listed: the samples of changed sources are gone with them (their
        # files stay for readers of older snapshots until a vacuum deletes them)
        index = snapshots.publish(storage, index, run, command)
        retired = _retire_old_config(ledger, run, config_sha)
        ledger.compact()
        vacuumed = after_run(storage, ledger, config.snapshots)
    summary = {
        "status": "ok",
        "out": str(storage),
        "run": run,
        **counts,
        "total_samples": index["samples"],
        "removed_orphan_shards": len(orphans),
        "retired_shards": len(retired) + len(stale),
        "vacuumed_shards": len(vacuumed.files) if vacuumed else 0,
        "duration_s": round(time.perf_counter() - t0, 3),
    }
    return BuildResult(report=data, out=Path(out) if storage.local else storage.url, summary=summary)
