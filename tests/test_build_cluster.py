"""The build on an existing cluster: a real `dask scheduler` and two `dask worker` processes on loopback."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from distributed import Client

from makeanything.cli import main
from tests.conftest import write_manifest

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Worker w0 offers the resource CLIP=1 (as a GPU worker would offer GPU=1); w1 offers nothing."""
    tmp_path = tmp_path_factory.mktemp("cluster")
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [
        subprocess.Popen(
            [
                str(BIN / "dask"),
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--dashboard-address",
                ":0",
            ],
            cwd=tmp_path,
            stderr=subprocess.DEVNULL,
        )
    ]
    procs += [
        subprocess.Popen(
            [
                str(BIN / "dask"),
                "worker",
                address,
                "--nthreads",
                "1",
                "--nworkers",
                "1",
                "--local-directory",
                str(tmp_path / f"w{i}"),
                "--name",
                f"w{i}",
                *(["--resources", "CLIP=1"] if i == 0 else []),
            ],
            cwd=tmp_path,
            stderr=subprocess.DEVNULL,
        )
        for i in range(2)
    ]
    try:
        with Client(address, timeout=60) as c:
            c.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for p in procs[::-1]:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)


def test_build_runs_on_an_existing_scheduler_with_two_workers(cluster, tutorials, tmp_path):
    for name, (path, _) in tutorials.items():
        shutil.copy(path, tmp_path / f"{name}.mp4")
    manifest = write_manifest(tmp_path, [{"glob": "*.mp4", "task": "oil-painting"}])
    t0 = time.time()
    with Client(cluster) as c:
        c.get_task_stream(start=t0)  # starts the scheduler's task-stream plugin before the build
    assert (
        main(["build", str(manifest), "--out", str(tmp_path / "out"), "--scheduler", cluster, "--quiet"]) == 0
    )
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["totals"]["ok"] == 3 and report["totals"]["samples"] == 3
    with Client(cluster) as c:  # both worker processes ran sources
        ran = {t["worker"] for t in c.get_task_stream(start=t0) if "run_fetched" in str(t["key"])}
    assert len(ran) == 2, ran


def test_clip_resources_pin_source_tasks_to_the_workers_that_offer_them(cluster, tutorials, tmp_path):
    from testkit.tiny_clip import register_tiny, write_random_model

    for name, (path, _) in tutorials.items():
        shutil.copy(path, tmp_path / f"{name}.mp4")
    manifest = write_manifest(tmp_path, [{"glob": "*.mp4", "task": "oil-painting"}])
    model = write_random_model(tmp_path / "model", register_tiny(tmp_path / "configs"))
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "clip": {
                    "model": model,
                    "resources": {"CLIP": 1},
                    # random weights must not decide anything here
                    "relevance_margin": 2.0,
                    "duplicate_similarity": 1.0,
                }
            }
        )
    )
    t0 = time.time()
    with Client(cluster) as c:
        c.get_task_stream(start=t0)
    assert (
        main(
            [
                "build",
                str(manifest),
                "--out",
                str(tmp_path / "out"),
                "--scheduler",
                cluster,
                "--config",
                str(config),
                "--quiet",
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "out" / "report.json").read_text())["totals"]["ok"] == 3
    with Client(cluster) as c:
        addr = {a: w["name"] for a, w in c.scheduler_info()["workers"].items()}
        ran = {
            addr.get(t["worker"], t["worker"])
            for t in c.get_task_stream(start=t0)
            if "run_fetched" in str(t["key"])
        }
    assert ran == {"w0"}, ran
