"""Refresh: only new work is done, finished shards stay untouched, rejected/failed/config rules, the lock,
dataset.json, inspect --verify and --json (all through the real CLI)."""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import subprocess
import time

import pytest

from makeanything.cli import main
from tests.refresh_support import inspect_verify, run_cli, shard_keys, write_config


def _digests(folder) -> dict[str, tuple[str, int]]:
    return {
        p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in folder.glob("*.tar")
    }


def _refresh(manifest, out, config, *extra) -> tuple[int, dict]:
    res = run_cli(
        ["refresh", str(manifest), "--out", str(out), "--config", str(config), "--quiet", "--json", *extra]
    )
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 1, res.stdout + res.stderr
    return res.returncode, json.loads(lines[0])


@pytest.fixture(scope="module")
def first(corpus, tmp_path_factory):
    """base.yaml built once; tests copy it before changing it."""
    d = tmp_path_factory.mktemp("first")
    config = write_config(d)
    rc, summary = _refresh(corpus / "base.yaml", d / "out", config)
    assert rc == 0, summary
    return d / "out", config, summary, corpus


def test_first_run_records_every_source(first):
    out, _, s, _ = first
    assert (s["processed"], s["ok"], s["rejected"], s["failed"], s["skipped"]) == (5, 3, 1, 1, 0)
    index = json.loads((out / "dataset.json").read_text())
    assert index["samples"] == s["total_samples"] == len(shard_keys(out)) == 3
    assert sorted(index["per_task"]) == ["oil-painting", "painting", "portrait"]
    assert index["sources"] == {"ok": 3, "rejected": 1, "failed": 1}
    assert [h["run"] for h in index["history"]] == [1]
    assert all(sh["name"].endswith(".tar") and "-r0001-" in sh["name"] for sh in index["shards"])


def test_refresh_does_only_the_new_source_and_never_touches_finished_shards(first, reference, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(first[0], out)
    before = _digests(out / "shards")
    time.sleep(0.01)
    rc, s = _refresh(first[3] / "more.yaml", out, first[1])
    assert rc == 0
    assert (s["processed"], s["skipped"], s["ok"], s["new_samples"]) == (
        1,
        5,
        1,
        1,
    )  # rejected+failed not retried
    after = _digests(out / "shards")
    assert {k: after[k] for k in before} == before  # byte-identical, not even rewritten
    new = set(after) - set(before)
    assert len(new) == 1 and "-r0002-" in new.pop()
    assert shard_keys(out) == reference["keys"]  # the same keys as one build of everything
    index = json.loads((out / "dataset.json").read_text())
    assert [h["counts"]["processed"] for h in index["history"]] == [5, 1]
    assert inspect_verify(str(out)).returncode == 0
    # every run's report is kept; the root holds the latest
    runs = {p.name: json.loads((p / "report.json").read_text()) for p in (out / "reports").iterdir()}
    assert sorted(runs) == ["run-0001", "run-0002"]
    assert [runs[r]["totals"]["sources"] for r in sorted(runs)] == [5, 1]
    assert json.loads((out / "report.json").read_text()) == runs["run-0002"]
    assert list((out / "reports" / "run-0001").glob("contact-*.png"))


def test_a_refresh_with_nothing_new_starts_no_cluster_and_writes_no_shard(first, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(first[0], out)
    before = _digests(out / "shards")
    res = run_cli(
        [
            "refresh",
            str(first[3] / "base.yaml"),
            "--out",
            str(out),
            "--config",
            str(first[1]),
            "--quiet",
            "--json",
        ]
    )
    assert res.returncode == 0, res.stderr
    s = json.loads(res.stdout)
    assert (s["processed"], s["skipped"], s["new_samples"], s["shards"]) == (0, 5, 0, 0)
    assert "dask dashboard" not in res.stderr  # printed whenever a Dask client is made
    assert _digests(out / "shards") == before


def test_failed_sources_are_retried_only_with_retry_failed(first, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(first[0], out)
    manifest = first[3] / "base.yaml"
    rc, s = _refresh(manifest, out, first[1])
    assert rc == 0 and s["processed"] == 0 and s["skipped"] == 5
    rc, s = _refresh(manifest, out, first[1], "--retry-failed")
    assert rc == 0 and (s["processed"], s["failed"]) == (1, 1)
    report = json.loads((out / "report.json").read_text())
    assert [r["uri"] for r in report["sources"]] == ["bomb"]
    assert "Decompressed data too large" in report["sources"][0]["reason"]


def test_changed_config_needs_rebuild_then_retires_old_shards(first, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(first[0], out)
    old = set(_digests(out / "shards"))
    keys = shard_keys(out)
    changed = write_config(tmp_path, shards={"jpeg_quality": 90})
    manifest = first[3] / "base.yaml"
    rc, s = _refresh(manifest, out, changed)
    assert rc == 2 and "--rebuild" in s["error"] and s["status"] == "error"
    assert set(_digests(out / "shards")) == old  # nothing touched
    rc, s = _refresh(manifest, out, changed, "--rebuild")
    assert rc == 0 and s["processed"] == 5 and s["retired_shards"] == len(old)  # rejected/failed redone too
    assert not old & set(_digests(out / "shards"))  # retention 0: the run's vacuum deleted them
    assert shard_keys(out) == keys  # same sources, same keys; none twice
    index = json.loads((out / "dataset.json").read_text())
    assert index["config"]["shards"]["jpeg_quality"] == 90 and len(index["history"]) == 2
    assert inspect_verify(str(out)).returncode == 0


def test_a_live_lock_stops_a_second_job_and_a_stale_one_is_taken_over(first, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(first[0], out)
    manifest = first[3] / "base.yaml"
    holder = subprocess.Popen(["sleep", "60"])
    try:
        (out / "lock.json").write_text(
            json.dumps({"pid": holder.pid, "host": socket.gethostname(), "since": 0})
        )
        t0 = time.time()
        rc, s = _refresh(manifest, out, first[1])
        assert rc == 3 and f"pid {holder.pid}" in s["error"] and time.time() - t0 < 30
    finally:
        holder.kill()
        holder.wait()
    rc, s = _refresh(manifest, out, first[1])  # the holder is dead now: its lock is stale
    assert rc == 0 and s["skipped"] == 5
    assert not (out / "lock.json").exists()


def test_inspect_verify_finds_a_damaged_shard(first, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(first[0], out)
    ok = run_cli(["inspect", str(out), "--json"])
    assert ok.returncode == 0 and json.loads(ok.stdout)["samples"] == 3
    victim = sorted((out / "shards").glob("*.tar"))[0]
    data = bytearray(victim.read_bytes())
    data[600:610] = b"XXXXXXXXXX"
    victim.write_bytes(bytes(data))
    (out / "shards" / "stray.tar").write_bytes(b"")
    res = inspect_verify(str(out))
    assert res.returncode == 1
    assert f"shards/{victim.name}: size or sha256 differs" in res.stdout
    assert "shards/stray.tar: on storage but not in dataset.json" in res.stdout


def test_min_shards_splits_a_small_run(corpus, tmp_path):
    config = write_config(tmp_path, shards={"samples_per_shard": 100, "min_shards": 3, "val_fraction": 0.0})
    assert (
        main(
            [
                "refresh",
                str(corpus / "more.yaml"),
                "--out",
                str(tmp_path / "out"),
                "--config",
                str(config),
                "--quiet",
            ]
        )
        == 0
    )
    index = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert index["samples"] == 4 and sorted(s["samples"] for s in index["shards"]) == [1, 1, 2]
