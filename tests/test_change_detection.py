"""Refresh by metadata: an unchanged corpus is not read at all, a touched file is hashed but not rebuilt,
a changed file is rebuilt alone and its old sample retired from the shard it shared with others."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tarfile
from pathlib import Path

import pytest
import skimage.data
import yaml

from makeanything.cli import main
from pipeline.demo.synthetic import make_tutorial
from tests.conftest import SHORT, SMALL
from tests.refresh_support import inspect_verify, shard_keys

OPENED: list[str] = []
WATCH: list[str] = []  # folder prefixes whose opens are recorded (audit hooks cannot be removed: gate them)


def _audit(event: str, args: tuple) -> None:
    if event == "open" and WATCH and isinstance(args[0], (str, bytes, os.PathLike)):
        path = os.fsdecode(args[0])
        if any(path.startswith(w) for w in WATCH):
            OPENED.append(path)


sys.addaudithook(_audit)


@pytest.fixture
def opened():
    """Paths under the registered folders opened by this process while the test runs."""
    OPENED.clear()
    yield OPENED
    WATCH.clear()


@pytest.fixture
def corpus3(tutorials, tmp_path):
    """Three videos and a folder of step images in src/; the manifest and config beside it."""
    src = tmp_path / "src"
    src.mkdir()
    for name, (path, _) in tutorials.items():
        shutil.copy(path, src / f"{name}.mp4")
    (src / "steps").mkdir()
    for i, name in enumerate(["camera", "moon", "brick"]):  # same size (512 px)
        shutil.copy(Path(skimage.data.data_dir) / f"{name}.png", src / "steps" / f"{i}_{name}.png")
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        yaml.safe_dump(
            {
                "sources": [
                    {"path": "src/astronaut.mp4", "task": "portrait", "id": "astro"},
                    {"path": "src/coffee.mp4", "task": "oil-painting", "id": "coffee"},
                    {"path": "src/chelsea.mp4", "task": "painting", "id": "cat"},
                    {"dir": "src/steps", "task": "line-draw", "id": "steps"},
                ]
            }
        )
    )
    config = tmp_path / "c.yaml"  # one shard for everything: a changed source shares it with the others
    config.write_text(  # retention 0: a run deletes the shards it retired at its end
        yaml.safe_dump(
            {
                "cluster": {"workers": 1, "processes": False},
                "shards": {"samples_per_shard": 50},
                "snapshots": {"retention_days": 0},
            }
        )
    )
    return src, manifest, config


def _refresh(capsys, manifest, out, config, *extra) -> dict:
    capsys.readouterr()
    assert (
        main(
            [
                "refresh",
                str(manifest),
                "--out",
                str(out),
                "--config",
                str(config),
                "--quiet",
                "--json",
                *extra,
            ]
        )
        == 0
    )
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def _sources(out: Path) -> dict[str, str]:
    """key -> source sha256 recorded in its sample json."""
    found = {}
    for tar_path in (out / "shards").glob("*.tar"):
        with tarfile.open(tar_path) as tar:
            for m in tar.getmembers():
                if m.name.endswith(".json"):
                    found[m.name[:-5]] = json.loads(tar.extractfile(m).read())["source"]["sha256"]
    return found


def test_unchanged_corpus_is_not_read_and_touched_file_is_hashed_not_rebuilt(
    corpus3, tmp_path, capsys, opened
):
    src, manifest, config = corpus3
    out = tmp_path / "out"
    first = _refresh(capsys, manifest, out, config)
    assert (first["processed"], first["ok"]) == (4, first["ok"]) and first["new_samples"] >= 3
    keys = shard_keys(out)

    WATCH.append(str(src))
    s = _refresh(capsys, manifest, out, config)
    assert (s["processed"], s["skipped"], s["new_samples"]) == (0, 4, 0)
    assert opened == []  # no source file was opened: sizes, mtimes and inodes said nothing changed

    os.utime(src / "coffee.mp4", ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
    os.utime(src / "steps" / "1_moon.png")
    s = _refresh(capsys, manifest, out, config)
    assert (s["processed"], s["skipped"], s["new_samples"]) == (0, 4, 0)
    assert sorted(set(opened)) == sorted(
        str(p) for p in [src / "coffee.mp4", *sorted((src / "steps").iterdir())]
    )
    assert shard_keys(out) == keys

    opened.clear()  # the new signatures were recorded: the next refresh reads nothing again
    s = _refresh(capsys, manifest, out, config)
    assert (s["processed"], s["skipped"]) == (0, 4) and opened == []

    s = _refresh(capsys, manifest, out, config, "--verify-content")
    assert (s["processed"], s["skipped"]) == (0, 4)
    assert {str(src / f"{n}.mp4") for n in ("astronaut", "coffee", "chelsea")} <= set(opened)


def test_changed_file_is_rebuilt_alone_and_its_old_sample_retired(corpus3, tmp_path, capsys):
    src, manifest, config = corpus3
    out = tmp_path / "out"
    _refresh(capsys, manifest, out, config)
    before, old_shards = _sources(out), sorted(p.name for p in (out / "shards").iterdir())
    counts = json.loads((out / "dataset.json").read_text())["sources"]
    assert len(old_shards) == 1

    make_tutorial(src / "coffee.mp4", skimage.data.coffee(), size=SMALL, script=SHORT, seed=11)  # new content
    new_sha = hashlib.sha256((src / "coffee.mp4").read_bytes()).hexdigest()
    s = _refresh(capsys, manifest, out, config)
    assert (s["processed"], s["skipped"], s["ok"], s["new_samples"], s["retired_shards"]) == (1, 3, 1, 1, 1)

    after = _sources(out)
    assert sorted(after) == sorted(before)  # same keys (the source has an id), each exactly once
    changed = [k for k in after if "_coffee_" in k]
    assert len(changed) == 1 and after[changed[0]] == new_sha != before[changed[0]]
    assert {k: v for k, v in after.items() if k not in changed} == {
        k: v for k, v in before.items() if k not in changed
    }
    shards = sorted(p.name for p in (out / "shards").iterdir())
    assert old_shards[0] not in shards and len(shards) == 2  # the new sample + the others, repacked
    index = json.loads((out / "dataset.json").read_text())
    assert index["samples"] == len(before) and index["sources"] == counts  # the old row no longer counts
    assert inspect_verify(str(out)).returncode == 0

    again = _refresh(capsys, manifest, out, config)
    assert (again["processed"], again["retired_shards"]) == (0, 0)


def test_a_duplicate_listing_is_not_read_again(tutorials, tmp_path, capsys, opened):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(tutorials["coffee"][0], src / "coffee.mp4")
    shutil.copy(tutorials["coffee"][0], src / "coffee-copy.mp4")  # same content under another name
    manifest = tmp_path / "m.yaml"
    manifest.write_text(yaml.safe_dump({"sources": [{"glob": "src/*.mp4", "task": "oil-painting"}]}))
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"cluster": {"workers": 1, "processes": False}}))
    first = _refresh(capsys, manifest, tmp_path / "out", config)
    assert (first["ok"], first["rejected"], first["duplicates"]) == (1, 0, 1)
    reasons = [r["reason"] for r in json.loads((tmp_path / "out" / "report.json").read_text())["sources"]]
    assert any(r.startswith("duplicate of") for r in reasons)
    WATCH.append(str(src))
    again = _refresh(capsys, manifest, tmp_path / "out", config)
    # the duplicate an earlier run reported is not reported again (noise for a cron job): both skipped
    assert (again["processed"], again["skipped"], again["rejected"], again["duplicates"]) == (0, 2, 0, 0)
    assert opened == []  # but neither file was read
