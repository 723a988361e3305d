"""A training run reads a corpus while a refresh (a real second process) retires one of its shards: the
trainer finishes, moving to the new snapshot at an epoch boundary (or staying on the pinned one with
data.follow: false), and run.json names the snapshots it read. A shard vacuumed from under a pinned reader is
skipped with a warning and counted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from evaluation.inputs import load_inputs
from evaluation.sequence import InputError
from makeanything.cli import main
from pipeline.review.site import write_site
from pipeline.taxonomy import Taxonomy
from tests.live_corpus import ROOT, cli, make_sources, missing_files, touch_step, write_config
from training.data import DataError, HeadResolver, ShardStream, resolve_shards


@pytest.fixture
def live(tmp_path) -> tuple[Path, Path, Path]:
    manifest, config = make_sources(tmp_path)
    out = tmp_path / "out"
    assert main(["build", str(manifest), "--out", str(out), "--config", str(config), "--quiet"]) == 0
    return out, manifest, config


def _train_config(folder: Path, corpus: Path, steps: int, **data) -> Path:
    cfg = yaml.safe_load((ROOT / "training" / "configs" / "tiny.yaml").read_text())
    cfg["data"].update(shards=[str(corpus)], batch_size=1, shuffle_buffer=1, **data)
    cfg["sample"]["every"] = 0
    cfg["train"].update(steps=steps, ckpt_every=steps, warmup=2, log_every=1)
    path = folder / "train.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _records(run: Path) -> list[dict]:
    path = run / "losses.jsonl"
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln] if path.is_file() else []


def _train_across_refresh(live, tmp_path, refresh_config: Path, steps: int = 24, **data):
    """Train in a second process; at step 2 freeze it (SIGSTOP), change one image and refresh (a third
    process), then let it go on. Returns (exit code, stdout, stderr, loss records, run.json)."""
    out, manifest, _ = live
    run = tmp_path / "run"
    trainer = subprocess.Popen(
        [sys.executable, "-m", "makeanything.cli", "train", str(_train_config(tmp_path, out, steps, **data))]
        + ["--out", str(run)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 300
        while not [r for r in _records(run) if r["step"] >= 2]:
            assert trainer.poll() is None and time.time() < deadline, trainer.communicate()[1][-3000:]
            time.sleep(0.05)
        trainer.send_signal(signal.SIGSTOP)
        touch_step(out.parent, "cat", 1)
        cli("refresh", str(manifest), "--out", str(out), "--config", str(refresh_config), "--quiet")
        trainer.send_signal(signal.SIGCONT)
        stdout, stderr = trainer.communicate(timeout=300)
    finally:
        if trainer.poll() is None:
            trainer.kill()
    return trainer.returncode, stdout, stderr, _records(run), json.loads((run / "run.json").read_text())


def test_a_trainer_moves_to_the_new_snapshot_at_an_epoch_boundary(live, tmp_path):
    out, _, config = live
    rc, stdout, stderr, recs, info = _train_across_refresh(live, tmp_path, config)
    assert rc == 0, stderr[-3000:]
    assert len(recs) == 24 and {r["snapshot"] for r in recs} == {1, 2}
    first_new = next(i for i, r in enumerate(recs) if r["snapshot"] == 2)
    assert all(r["snapshot"] == 1 for r in recs[:first_new]) and all(
        r["snapshot"] == 2 for r in recs[first_new:]
    )
    assert (
        recs[first_new]["epoch"] == recs[first_new - 1]["epoch"] + 1
    )  # at an epoch boundary, not inside one
    assert [(d["snapshot"], d["epoch"]) for d in info["data"]] == [(1, 0), (2, recs[first_new]["epoch"])]
    assert "data: moved to snapshot 2" in stdout
    assert not missing_files(out)  # the retired shard stays for the retention (7 days)
    assert len(list((out / "shards").glob("*.tar"))) == 4


def test_follow_false_stays_on_the_pinned_snapshot_and_skips_a_vacuumed_shard(live, tmp_path):
    out, _, _ = live
    # the refresh vacuums at once (retention 0): the pinned snapshot's retired shard is deleted under the
    # trainer, which skips it every epoch with a warning and counts it (1 of 3 shards: under max_missing)
    now = write_config(tmp_path, retention_days=0)
    rc, _, stderr, recs, info = _train_across_refresh(live, tmp_path, now, follow=False, max_missing=0.5)
    assert rc == 0, stderr[-3000:]
    assert {r["snapshot"] for r in recs} == {1} and [d["snapshot"] for d in info["data"]] == [1]
    assert "has vanished (vacuumed or deleted): skipped (1 of its 3 shards gone)" in stderr
    assert recs[-1]["vanished_shards"] == 1
    assert not any(r["keys"] == ["painting_cat_s0"] for r in recs[-6:])  # the vanished shard's sample
    assert sorted(p.name for p in (out / "snapshots").glob("*.json")) == ["000002.json"]


def test_more_than_max_missing_gone_stops_with_a_message_naming_the_snapshot(live, tmp_path):
    out, manifest, _ = live
    shards = resolve_shards([str(out)])
    for name in sorted((out / "shards").glob("*.tar"))[:2]:
        name.unlink()
    stream = ShardStream(
        shards,
        HeadResolver(None, {}),
        batch_size=1,
        shuffle_buffer=1,
        cell=16,
        token=2,
        seed=0,
        max_missing=0.5,
    )
    with pytest.raises(DataError, match=r"2 of the 3 shards of snapshot 1 have vanished, more than"):
        list(zip(range(10), stream))


def test_evaluate_and_review_read_the_pinned_snapshot_and_skip_a_vanished_shard(live, tmp_path, capsys):
    out, _, _ = live
    gone = sorted((out / "shards").glob("*.tar"))[0]
    gone.unlink()  # deleted remotely, or vacuumed too early
    pins: dict = {}
    items = list(load_inputs([f"ours={out}"], Taxonomy.load(), pins=pins))
    errors = [i for i in items if isinstance(i, InputError)]
    assert pins == {str(out): 1} and len(items) == 3
    assert [(e.source, e.problem) for e in errors] == [
        (str(gone), "vanished from snapshot 1 (vacuumed or deleted)")
    ]
    stats = write_site(str(out), tmp_path / "site")
    assert (stats["snapshot"], stats["vanished_shards"], stats["sequences"]) == (1, 1, 2)
    assert f"shards/{gone.name} of snapshot 1 has vanished" in capsys.readouterr().err
