"""The build driver: resolve the manifest, fan sources out to Dask workers, stream results into shards.

Sources are independent Dask tasks; at most ``workers x in_flight_per_worker`` run or wait at once,
so the driver's memory stays bounded however long the manifest is. Only the driver writes shards.
"""
from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from distributed import Client, LocalCluster, as_completed
from tqdm import tqdm

from pipeline import __version__
from pipeline.clip import plan_clip
from pipeline.config import BuildConfig
from pipeline.fetch import prepare
from pipeline.manifest import load_manifest
from pipeline.report import RunReport
from pipeline.result import SourceResult, run_source
from pipeline.shards import ShardWriter
from pipeline.stages.chain import build_stages
from pipeline.taxonomy import Taxonomy
from pipeline.work import Source


@dataclass
class BuildResult:
    report: dict
    out: Path


@contextlib.contextmanager
def dask_client(config: BuildConfig) -> Iterator[Client]:
    """Connect to ``cluster.scheduler`` if given, else start a LocalCluster of single-threaded processes."""
    c = config.cluster
    if c.scheduler:
        with Client(c.scheduler) as client:
            yield client
    else:
        with LocalCluster(n_workers=c.workers, threads_per_worker=1, processes=True,
                          dashboard_address=":0") as cluster, Client(cluster) as client:
            yield client


def _dedupe(prepared: list[tuple[Source, str, str]]) -> tuple[list[tuple[Source, str]], list[SourceResult]]:
    """Keep the first listing of each file (by path and by content); the rest are recorded as duplicates."""
    keep, dropped, seen = [], [], {}
    for src, sha, err in prepared:
        row = SourceResult(entry=src.entry, uri=src.uri, task=src.task.id, sha256=sha, status="rejected")
        if err:
            row.reason = err
            dropped.append(row)
            continue
        ident = sha or src.path
        if ident in seen:
            row.reason = f"duplicate of sources[{seen[ident].entry}] ({seen[ident].uri}): same content, processed once"
            dropped.append(row)
            continue
        seen[ident] = src
        keep.append((src, sha))
    return keep, dropped


def build(manifest: str | Path, out: str | Path, config: BuildConfig, progress: bool = True) -> BuildResult:
    """Build the corpus of ``manifest`` into ``out``. Manifest errors raise before any work starts."""
    t0 = time.perf_counter()
    taxonomy = Taxonomy.load(config.taxonomy)
    sources = load_manifest(manifest, taxonomy)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cache = config.cache_dir or str(out / "cache")
    clip = plan_clip(config.clip)  # raises ClipUnavailable before any work when clip.require is set
    print(clip.message, file=sys.stderr)
    stages = build_stages(config, clip.spec)
    report = RunReport()
    with dask_client(config) as client:
        print(f"dask dashboard: {client.dashboard_link}", file=sys.stderr)
        prepared = client.gather(client.map(prepare, sources, cache_dir=cache, pure=False))
        todo, dropped = _dedupe(prepared)
        for row in dropped:
            report.add(row)
        window = max(1, len(client.scheduler_info()["workers"])) * config.cluster.in_flight_per_worker
        pending = iter(todo)
        futures = as_completed()
        for src, sha in [next(pending) for _ in range(min(window, len(todo)))]:
            futures.add(client.submit(run_source, src, sha, stages, config, pure=False))
        with ShardWriter(out / "shards", samples_per_shard=config.shards.samples_per_shard) as writer, \
                tqdm(total=len(sources), initial=len(dropped), desc="sources", unit="src", disable=not progress) as bar:
            for fut in futures:
                res: SourceResult = fut.result()
                fut.release()
                for sample in res.samples:
                    writer.write(sample)
                report.add(res)
                bar.update(1)
                bar.set_postfix(samples=sum(report.per_task.values()))
                nxt = next(pending, None)
                if nxt is not None:
                    futures.add(client.submit(run_source, nxt[0], nxt[1], stages, config, pure=False))
            shards = writer.close()
    header = {"version": __version__, "manifest": str(manifest), "config_sha": config.sha(), "clip": clip.message,
              "config": config.model_dump(mode="json")}
    return BuildResult(report=report.write(out, header, shards, time.perf_counter() - t0), out=out)
