"""kill -9 at several points of a real `makeanything refresh` process, rerun after each: the dataset ends
with exactly the samples of an uninterrupted build (same keys, none twice, no partial file anywhere)."""

from __future__ import annotations

import json
import signal
import subprocess
import time

from tests.refresh_support import (
    BIN,
    inspect_verify,
    kill_group,
    no_temp_files,
    run_cli,
    shard_keys,
    write_config,
)

# Where each run dies, in order; the later ones find the debris of the earlier ones.
FAILPOINTS = ["shard-staged", "shard-published", "committed:2", "before-index"]


def test_kill_9_at_each_point_then_rerun_gives_the_uninterrupted_dataset(corpus, reference, tmp_path):
    out, config = tmp_path / "out", write_config(tmp_path)
    args = ["refresh", str(corpus / "more.yaml"), "--out", str(out), "--config", str(config), "--quiet"]
    for point in FAILPOINTS:
        res = run_cli(args, env={"MAKEANYTHING_FAILPOINT": point})
        assert res.returncode == -signal.SIGKILL, (point, res.returncode, res.stderr[-2000:])
        shard_keys(out)  # every tar under its final name is complete
        assert not (out / "dataset.json").exists() or point == "before-index"
    res = run_cli(args)
    assert res.returncode == 0, res.stderr[-2000:]
    assert shard_keys(out) == reference["keys"]
    assert no_temp_files(out) == []
    index = json.loads((out / "dataset.json").read_text())
    assert index["samples"] == reference["index"]["samples"]
    assert index["per_task"] == reference["index"]["per_task"]
    assert inspect_verify(str(out)).returncode == 0


def test_kill_9_from_outside_mid_run_then_rerun(corpus, reference, tmp_path):
    """No failpoint: the whole process group is killed once the first shard is recorded."""
    out, config = tmp_path / "out", write_config(tmp_path)
    args = [
        str(BIN / "makeanything"),
        "refresh",
        str(corpus / "more.yaml"),
        "--out",
        str(out),
        "--config",
        str(config),
        "--quiet",
    ]
    proc = subprocess.Popen(
        args, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.time() + 120
        while not list((out / "shards").glob("*.tar")) and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
    finally:
        kill_group(proc.pid)
        proc.wait()
    assert not (out / "dataset.json").exists()
    res = run_cli(args[1:])
    assert res.returncode == 0, res.stderr[-2000:]
    assert shard_keys(out) == reference["keys"] and no_temp_files(out) == []
    assert inspect_verify(str(out)).returncode == 0
