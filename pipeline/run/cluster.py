"""Where sources run: threads of the driver for a run with a source per worker or fewer to process, else
the Dask client (an existing scheduler, or a LocalCluster started for the run); and how each source task
uses its worker's cores.

A small run (one new video, a refresh that adds a few) runs its sources on a thread pool of the driver
and never imports Dask: importing distributed and starting even a threaded LocalCluster cost ~0.7 s of
CPU, a quarter of a one-item build.

One task per core: every worker of a LocalCluster runs one source at a time, single-threaded (OpenCV's
own thread pool is turned off in them, as Dask already does for OpenMP and BLAS; on an existing cluster
the workers' environment decides, e.g. OPENCV_FOR_THREADS_NUM=1). Only the last sources of a run,
which leave other workers idle, decode with frame threading (``cluster.decode_threads``); on busy
cores it costs ~15% more decoder CPU for no gain. A small run starts no dashboard: importing and
starting it costs about as much as scheduling the whole run.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import sys
from collections.abc import Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeVar

from pipeline.config import BuildConfig

if TYPE_CHECKING:
    from distributed import Client

T = TypeVar("T")
DASHBOARD_MIN_SOURCES = 51  # cluster.dashboard: None starts the dashboard for runs listing at least this many
# Housekeeping of a cluster without a dashboard (defaults 20 ms and 500 ms): half the idle CPU of the
# scheduler, nannies and workers. Blocked event loops are still reported, memory limits still watched.
QUIET = {"distributed.admin.tick.interval": "500ms", "distributed.admin.system-monitor.interval": "2s"}


@contextlib.contextmanager
def _one_opencv_thread() -> Iterator[None]:
    """OpenCV single-threaded in the workers started meanwhile: forked ones (and threads) inherit the
    driver's setting, spawned ones read OPENCV_FOR_THREADS_NUM. Its pool of one thread per core, in each of
    one worker per core, only adds switching; the results do not depend on it. (Changing it inside a
    forked worker whose parent had started the pool can deadlock.)"""
    import cv2

    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


def wants_dashboard(config: BuildConfig, listed: int) -> bool:
    """``cluster.dashboard``, or for None whether the run is long enough for anyone to open one."""
    d = config.cluster.dashboard
    return d if d is not None else listed >= DASHBOARD_MIN_SOURCES


@contextlib.contextmanager
def dask_client(
    config: BuildConfig, clip_runs: bool = False, listed: int = 0, few: bool = False
) -> Iterator[Client]:
    """Connect to ``cluster.scheduler`` if given, else start a LocalCluster of single-threaded workers
    (``listed``: how many sources the run lists, for ``cluster.dashboard: null``; ``few``: whether it has
    at most one source per worker to process, for ``cluster.processes: null``)."""
    import dask
    from distributed import Client, LocalCluster

    c = config.cluster
    if c.scheduler:
        with Client(c.scheduler) as client:
            print(f"dask dashboard: {client.dashboard_link}", file=sys.stderr)
            yield client
        return
    method = c.start_method if c.start_method != "auto" else ("spawn" if clip_runs else "fork")
    dashboard = wants_dashboard(config, listed)
    processes = c.processes if c.processes is not None else not few
    # Workers take their Dask config from here (fork or spawn). Without a dashboard nobody reads the profiler's
    # samples of their stacks nor fine-grained event-loop and system statistics: those only cost CPU.
    environ = {**dask.config.get("distributed.nanny.pre-spawn-environ"), "OPENCV_FOR_THREADS_NUM": 1}
    quiet = {} if dashboard else QUIET
    with (
        dask.config.set(
            {
                "distributed.worker.multiprocessing-method": method,
                "distributed.worker.profile.enabled": dashboard,
                "distributed.nanny.pre-spawn-environ": environ,
                **quiet,
            }
        ),
        _one_opencv_thread(),
        LocalCluster(
            n_workers=c.workers,
            threads_per_worker=1,
            processes=processes,
            dashboard_address=":0",
            scheduler_kwargs={"dashboard": dashboard},
            resources=config.clip.resources or None,
        ) as cluster,
        Client(cluster) as client,
    ):
        if dashboard:
            print(f"dask dashboard: {client.dashboard_link}", file=sys.stderr)
        yield client


def in_driver(config: BuildConfig, listed: int, few: bool) -> bool:
    """Whether the run's sources go to a thread pool of the driver, not to Dask: no scheduler is given, no
    dashboard wanted, and ``cluster.processes`` is false, or null with ``few`` sources to process."""
    c = config.cluster
    local_threads = c.processes is False or (c.processes is None and few)
    return not c.scheduler and not wants_dashboard(config, listed) and local_threads


@contextlib.contextmanager
def source_executor(
    config: BuildConfig, clip_runs: bool, listed: int, few: bool, resources: dict | None
) -> Iterator[tuple[Executor, int]]:
    """The executor the run's source tasks go to, and how many of them run at once: the driver's threads
    (``in_driver``; OpenCV single-threaded in them, as in Dask's workers) or a Dask client's executor
    (``dask_client``; ``resources``: what every source task needs there, e.g. {"GPU": 1})."""
    if in_driver(config, listed, few):
        with _one_opencv_thread():
            pool = ThreadPoolExecutor(config.cluster.workers, "source")
            try:
                yield pool, config.cluster.workers
            finally:  # a run that stops early (an error while committing) starts no source it queued
                pool.shutdown(cancel_futures=True)
        return
    with dask_client(config, clip_runs, listed, few) as client:
        workers = max(1, len(client.scheduler_info()["workers"]))
        yield client.get_executor(pure=False, resources=resources), workers


def mark_last(items: Iterator[T], last: int) -> Iterator[tuple[T, bool]]:
    """Each item with whether it is one of the final ``last`` items (reads ``last`` items ahead)."""
    ahead = collections.deque(itertools.islice(items, last))
    for item in items:
        ahead.append(item)
        yield ahead.popleft(), False
    while ahead:
        yield ahead.popleft(), True
