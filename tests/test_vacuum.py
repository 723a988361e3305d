"""Vacuum: retention respected, --dry-run deletes nothing, the lock honoured, kill -9 at any point then rerun
leaves every snapshot's files in place; and a property-style test: after any sequence of build / refresh /
curate / caption / vacuum, on a folder and on S3 (moto), every snapshot on storage has all its files and
every run has its own number."""

from __future__ import annotations

import json
import random
import socket
import subprocess
from pathlib import Path

import pytest

from makeanything.cli import main
from pipeline.corpus import snapshots
from pipeline.corpus.index import read_index
from pipeline.corpus.inspection import verify
from pipeline.corpus.ledger import Ledger
from pipeline.corpus.vacuum import DAY, vacuum
from pipeline.io.storage import Storage
from tests.live_corpus import cli, make_sources, missing_files, touch_step
from tests.test_s3_refresh import s3  # noqa: F401 (fixture: moto's S3 server on loopback)
from tests.vlm_server import vlm  # noqa: F401 (fixture: a chat-completions server on loopback)
from training.data import HeadResolver, ShardStream, resolve_shards


def _refresh(manifest: Path, out: str, config: Path) -> None:
    assert main(["refresh", str(manifest), "--out", out, "--config", str(config), "--quiet"]) == 0


@pytest.fixture
def three_runs(tmp_path) -> tuple[Path, Path, Path]:
    """Build, then two refreshes that each change the cat folder: snapshots 1-3, two cat shards retired."""
    manifest, config = make_sources(tmp_path, ["cat", "rocket"])
    out = tmp_path / "out"
    assert main(["build", str(manifest), "--out", str(out), "--config", str(config), "--quiet"]) == 0
    for seed in (1, 2):
        touch_step(tmp_path, "cat", seed)
        _refresh(manifest, str(out), config)
    return out, manifest, config


def test_retention_keeps_what_recent_snapshots_list_and_dry_run_deletes_nothing(three_runs, capsys):
    out, _, _ = three_runs
    storage = Storage(out)
    assert snapshots.runs(storage) == [1, 2, 3] and len(storage.list("shards")) == 4  # 2 live + 2 retired
    t2, t3 = (snapshots.read(storage, n)["time"] for n in (2, 3))
    ledger = Ledger.load(storage)
    # snapshot 1 was replaced at t2, snapshot 2 at t3: each goes once the retention has passed since then
    assert vacuum(storage, ledger, 7 * DAY, dry_run=True, now=t3 + 6 * DAY).expired == []
    assert t3 > t2
    plan = vacuum(storage, ledger, 7 * DAY, dry_run=True, now=t2 + 7 * DAY + (t3 - t2) / 2)
    assert plan.expired == [1] and len(plan.files) == 1 and plan.kept == [2, 3]
    assert vacuum(storage, ledger, 7 * DAY, dry_run=True, now=t3 + 8 * DAY).expired == [1, 2]

    before = sorted(storage.list("shards"))
    capsys.readouterr()
    assert main(["vacuum", str(out), "--retention", "0", "--dry-run"]) == 0
    said = capsys.readouterr().out
    assert said.count("would delete shards/") == 2 and "would delete snapshots/000001.json" in said
    assert sorted(storage.list("shards")) == before and snapshots.runs(storage) == [1, 2, 3]
    assert main(["vacuum", str(out)]) == 0  # the default retention (7 days): nothing is old enough
    assert sorted(storage.list("shards")) == before
    assert main(["vacuum", str(out), "--retention", "0", "--json"]) == 0
    done = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert done["expired_snapshots"] == [1, 2] and len(done["shards"]) == 2 and done["bytes"] > 0
    index = read_index(storage)
    assert sorted(storage.list("shards")) == sorted(s["name"] for s in index["shards"])
    assert snapshots.runs(storage) == [3] and verify(storage, index) == []


def test_vacuum_honours_the_lock(three_runs):
    out, _, _ = three_runs
    holder = subprocess.Popen(["sleep", "60"])
    try:
        (out / "lock.json").write_text(
            json.dumps({"pid": holder.pid, "host": socket.gethostname(), "since": 0})
        )
        before = sorted(p.name for p in (out / "shards").iterdir())
        res = cli("vacuum", str(out), "--retention", "0", check=False)
        assert res.returncode == 3 and str(holder.pid) in res.stderr
        assert sorted(p.name for p in (out / "shards").iterdir()) == before
    finally:
        holder.kill()
        holder.wait()
        (out / "lock.json").unlink()


@pytest.mark.parametrize(
    "point", ["vacuum-snapshot-removed:1", "vacuum-snapshot-removed:2", "vacuum-shard-removed:1"]
)
def test_kill_9_during_vacuum_then_rerun(three_runs, point):
    out, _, _ = three_runs
    killed = cli("vacuum", str(out), "--retention", "0", env={"MAKEANYTHING_FAILPOINT": point}, check=False)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert missing_files(out) == []  # every snapshot still on storage has all its files
    cli("vacuum", str(out), "--retention", "0")  # the rerun takes over the dead job's lock
    storage = Storage(out)
    index = read_index(storage)
    assert snapshots.runs(storage) == [3] and verify(storage, index) == []
    assert sorted(storage.list("shards")) == sorted(s["name"] for s in index["shards"])


def _random_session(out: str, tmp: Path, vlm_url: str, seed: int, steps: int) -> list[str]:
    """Random build / refresh / curate / caption / vacuum commands on one corpus; after each, every
    snapshot's files exist. Returns what ran (for the failure message)."""
    rng = random.Random(seed)
    manifest, config = make_sources(tmp, ["cat", "rocket"])
    assert main(["build", str(manifest), "--out", out, "--config", str(config), "--quiet"]) == 0
    done, held = ["build"], False
    for _ in range(steps):
        op = rng.choice(["refresh-change", "refresh-noop", "curate", "caption", "vacuum"])
        if op == "refresh-change":
            touch_step(tmp, rng.choice(["cat", "rocket"]), rng.randrange(1000))
            _refresh(manifest, out, config)
        elif op == "refresh-noop":
            _refresh(manifest, out, config)
        elif op == "curate":
            args = ["--undo", "emoji"] if held else ["--hold-out", "emoji", "--reason", "a test decision"]
            assert main(["curate", out, *args]) == 0
            held = not held
        elif op == "caption":
            assert main(["caption", out, "--url", vlm_url, "--model", "test-vlm", "--quiet"]) == 0
        else:
            retention = rng.choice(["0", "7"])
            assert main(["vacuum", out, "--retention", retention]) == 0
            op += f" --retention {retention}"
        done.append(op)
        assert missing_files(out) == [], done
    storage = Storage(out)
    index = read_index(storage)
    runs = [h["run"] for h in index["history"]]
    assert runs == sorted(set(runs)) and len(runs) == len([d for d in done if not d.startswith("vacuum")]), (
        done
    )
    assert verify(storage, index) == [], done
    return done


@pytest.mark.parametrize("seed", [0, 1])
def test_every_snapshot_keeps_its_files_through_random_sessions(tmp_path, vlm, seed):  # noqa: F811
    _random_session(str(tmp_path / "out"), tmp_path, vlm.url, seed, steps=7)


def test_the_same_on_s3_and_the_trainer_reads_its_snapshot(s3, tmp_path, vlm):  # noqa: F811
    out = "s3://corpus-bucket/live"
    _random_session(out, tmp_path, vlm.url, seed=3, steps=5)
    shards, index = resolve_shards([out]), read_index(Storage(out))
    assert shards.label == index["snapshot"] and len(shards.urls) == len(index["shards"])
    assert all(u.startswith(f"{out}/shards/") for u in shards.urls)
    stream = ShardStream(
        shards, HeadResolver(None, {}), batch_size=1, shuffle_buffer=1, cell=16, token=2, seed=0
    )
    batch = next(iter(stream))
    assert batch["snapshot"] == index["snapshot"] and batch["vanished"] == 0
