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
from distributed import Client

from makeanything.cli import main
from tests.conftest import write_manifest

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def cluster(tmp_path):
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--dashboard-address", ":0"], cwd=tmp_path, stderr=subprocess.DEVNULL)]
    procs += [subprocess.Popen([str(BIN / "dask"), "worker", address, "--nthreads", "1", "--nworkers", "1",
                                "--local-directory", str(tmp_path / f"w{i}"), "--name", f"w{i}"],
                               cwd=tmp_path, stderr=subprocess.DEVNULL) for i in range(2)]
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
    assert main(["build", str(manifest), "--out", str(tmp_path / "out"), "--scheduler", cluster, "--quiet"]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["totals"]["ok"] == 3 and report["totals"]["samples"] == 3
    with Client(cluster) as c:  # both worker processes ran sources
        ran = {t["worker"] for t in c.get_task_stream(start=t0) if "run_source" in str(t["key"])}
    assert len(ran) == 2, ran
