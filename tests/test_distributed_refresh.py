"""A real `dask scheduler` and two `dask worker` processes on loopback; one worker is killed (SIGKILL,
nanny and all) while it runs a source. The run completes on the other and the dataset equals an
uninterrupted build: nothing lost, nothing twice."""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time

from distributed import Client

from makeanything.cli import main
from tests.refresh_support import BIN, inspect_verify, kill_group, shard_keys, write_config


def test_a_worker_killed_mid_build_neither_breaks_the_run_nor_duplicates_output(corpus, reference, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    procs = {
        "scheduler": subprocess.Popen(
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
            start_new_session=True,
        )
    }
    for name in ("w0", "w1"):
        procs[name] = subprocess.Popen(
            [
                str(BIN / "dask"),
                "worker",
                address,
                "--nthreads",
                "1",
                "--name",
                name,
                "--local-directory",
                str(tmp_path / name),
            ],
            cwd=tmp_path,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=60)
            rc: list[int] = []
            job = threading.Thread(
                target=lambda: rc.append(
                    main(
                        [
                            "refresh",
                            str(corpus / "more.yaml"),
                            "--out",
                            str(tmp_path / "out"),
                            "--scheduler",
                            address,
                            "--config",
                            str(write_config(tmp_path)),
                            "--quiet",
                        ]
                    )
                )
            )
            job.start()
            victim = None
            deadline = time.time() + 120
            while victim is None and time.time() < deadline and job.is_alive():
                for addr, keys in client.processing().items():
                    if any("run_fetched" in str(k) for k in keys):
                        victim = client.scheduler_info()["workers"][addr]["name"]
                        break
                time.sleep(0.02)
            assert victim is not None, "no worker was seen running a source"
            kill_group(procs[victim].pid)
            job.join(timeout=300)
        assert rc == [0]
        assert procs[victim].wait(timeout=10) == -signal.SIGKILL
        out = tmp_path / "out"
        assert shard_keys(out) == reference["keys"]
        assert inspect_verify(str(out)).returncode == 0
    finally:
        for p in procs.values():
            kill_group(p.pid)
            p.wait(timeout=30)
