"""How a run uses its cluster's cores, on a real LocalCluster of worker processes: one source per worker,
single-threaded, except the run's last source, which decodes with frame threads; a small run starts no
dashboard (the scheduler's HTTP server answers, the dashboard page does not), no worker profiler and
slower event-loop ticks; a run with a source per worker or fewer runs on the driver's threads without
importing Dask."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import pytest

from pipeline.config import BuildConfig, ClipConfig, ClusterConfig
from pipeline.intake.fetch import Prepared
from pipeline.run.cluster import DASHBOARD_MIN_SOURCES, dask_client, in_driver, mark_last
from pipeline.run.driver import _results
from pipeline.stages.chain import build_stages
from pipeline.taxonomy import Taxonomy
from pipeline.work import Source


def test_mark_last_flags_the_final_items_reading_only_that_far_ahead():
    assert list(mark_last(iter("abc"), 1)) == [("a", False), ("b", False), ("c", True)]
    assert [last for _, last in mark_last(iter(range(5)), 3)] == [False, False, True, True, True]
    assert list(mark_last(iter("ab"), 3)) == [("a", True), ("b", True)]
    assert list(mark_last(iter(()), 2)) == []
    items = iter(range(100))
    first = next(mark_last(items, 2))
    assert first == (0, False) and next(items) == 3  # 1 and 2 read ahead of 0, no further


def _status(link: str) -> int:
    try:
        with urllib.request.urlopen(link, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def _housekeeping(dask_worker) -> tuple[bool, float]:  # noqa: ANN001 - run on each worker by client.run
    """Whether the worker's profiler samples its stacks, and its event-loop tick (ms)."""
    return "profile-cycle" in dask_worker.periodic_callbacks, dask_worker.periodic_callbacks[
        "tick"
    ].callback_time


def test_workers_are_single_threaded_and_only_the_last_source_decodes_with_frame_threads(tutorials, tmp_path):
    config = BuildConfig(clip=ClipConfig(enabled=False), cluster=ClusterConfig(workers=2, decode_threads=3))
    task = Taxonomy.load()["painting"]
    items = [
        Prepared(Source(uri=str(p), path=str(p), task=task, kind="video", entry=i), "0" * 64, "")
        for i, (p, _) in enumerate(tutorials.values())
    ]
    stages = {
        ("video", last): build_stages(config, None, "video", 3 if last else 1) for last in (False, True)
    }
    driver_threads = cv2.getNumThreads()
    with dask_client(config, listed=len(items)) as client:
        assert set(client.run(cv2.getNumThreads).values()) == {1}
        assert set(client.run(_housekeeping).values()) == {(False, 500)}
        assert _status(client.dashboard_link) == 404  # no dashboard page, though the scheduler serves HTTP
        pool = client.get_executor(pure=False)
        done = list(_results(pool, 2, iter(items), stages, config, str(tmp_path / "cache")))
    threads = {res.entry: res.probe["decode_threads"] for _, res in done}
    assert [r.status for _, r in done] == ["ok"] * 3
    assert threads == {0: 1, 1: 1, 2: 3}, threads
    assert cv2.getNumThreads() == driver_threads  # the driver's own setting is back


def test_spawned_workers_run_opencv_single_threaded_too():
    config = BuildConfig(cluster=ClusterConfig(workers=1, start_method="spawn"))
    with dask_client(config, listed=1) as client:
        assert set(client.run(cv2.getNumThreads).values()) == {1}


@pytest.mark.parametrize("listed, dashboard", [(DASHBOARD_MIN_SOURCES, None), (1, True)])
def test_a_long_run_or_the_config_starts_the_dashboard(listed, dashboard):
    config = BuildConfig(cluster=ClusterConfig(workers=1, dashboard=dashboard))
    with dask_client(config, listed=listed) as client:
        assert _status(client.dashboard_link) == 200
        assert set(client.run(_housekeeping).values()) == {(True, 20)}


@pytest.mark.parametrize(
    "processes,few,in_driver",
    [(None, True, True), (None, False, False), (True, True, False), (False, False, True)],
)
def test_a_run_with_a_source_per_worker_or_fewer_runs_on_threads(processes, few, in_driver):
    """cluster.processes: null starts worker processes, except for a run with at most one source per
    worker to process (a refresh that adds a few), which runs on threads in the driver; set, it decides."""
    import os

    config = BuildConfig(
        cluster=ClusterConfig(workers=2, processes=processes), clip=ClipConfig(enabled=False)
    )
    with dask_client(config, listed=2, few=few) as client:
        pids = set(client.run(os.getpid).values())
    assert len(pids) == (1 if in_driver else 2)
    assert (pids == {os.getpid()}) == in_driver


@pytest.mark.parametrize(
    "cluster,few,listed,expected",
    [
        ({}, True, 2, True),
        ({}, False, 2, False),
        ({"processes": False}, False, 2, True),
        ({"processes": True}, True, 2, False),
        ({"scheduler": "tcp://127.0.0.1:8786"}, True, 2, False),
        ({"dashboard": True}, True, 2, False),
        ({"processes": False}, True, DASHBOARD_MIN_SOURCES, False),
    ],
)
def test_which_runs_go_to_the_drivers_threads(cluster, few, listed, expected):
    """No scheduler, no dashboard, and threads asked for (processes: false) or chosen (null, few sources)."""
    assert in_driver(BuildConfig(cluster=ClusterConfig(**cluster)), listed, few) is expected


def test_a_one_source_build_never_imports_dask(tutorials, tmp_path):
    """A fresh interpreter builds one video (default cluster config) on its own threads: distributed and
    dask are never imported (their import alone costs about a quarter of a one-item build)."""
    path = tutorials["coffee"][0]
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"sources": [{"path": str(path), "task": "painting"}]}))
    code = (
        "import json, sys; from pipeline.config import BuildConfig, ClipConfig; "
        "from pipeline.run.driver import build; "
        f"r = build({str(manifest)!r}, {str(tmp_path / 'out')!r}, BuildConfig(clip=ClipConfig(enabled=False)), "
        "progress=False); print(json.dumps([r.summary['ok'], 'dask' in sys.modules, 'distributed' in sys.modules]))"
    )
    repo = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out.splitlines()[-1]) == [1, False, False]
