"""Source kinds beyond a local video: URLs (served over real HTTP on loopback), folders of step images,
and long videos holding several works."""

from __future__ import annotations

import hashlib
import json
from itertools import chain
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

from makeanything.cli import main
from pipeline.config import BuildConfig, SelectConfig
from pipeline.demo.synthetic import tutorial_frames, write_video
from pipeline.run.worker import run_source
from pipeline.stages.chain import build_stages
from pipeline.taxonomy import Taxonomy
from pipeline.work import Source
from tests.conftest import SHORT, SMALL, serve_folder, write_manifest

TAXONOMY = Taxonomy.load()


@pytest.fixture
def http_root(tmp_path):
    """A real HTTP server on a free loopback port serving tmp_path/www."""
    root = tmp_path / "www"
    root.mkdir()
    with serve_folder(root) as base:
        yield root, base


def test_url_sources_are_fetched_built_and_not_kept(tutorials, http_root, tmp_path, capsys):
    root, base = http_root
    (root / "coffee.mp4").write_bytes(Path(tutorials["coffee"][0]).read_bytes())
    manifest = write_manifest(
        tmp_path,
        [
            {"url": f"{base}/coffee.mp4", "task": "oil-painting"},
            {"url": f"{base}/missing.mp4", "task": "oil-painting"},
        ],
    )
    out = tmp_path / "out"
    assert main(["build", str(manifest), "--out", str(out), "--workers", "1", "--quiet"]) == 0
    assert (
        "1 new sequences from 1/2 sources handled in this run (1 rejected, 0 failed)"
        in capsys.readouterr().out
    )
    report = json.loads((out / "report.json").read_text())
    ok, missing = report["sources"]
    assert ok["status"] == "ok" and len(ok["samples"]) == 1
    assert ok["sha256"] == hashlib.sha256((root / "coffee.mp4").read_bytes()).hexdigest()
    assert (
        missing["status"] == "rejected" and "unavailable" in missing["reason"] and "404" in missing["reason"]
    )
    assert not (out / "cache").exists()  # the download lived only while its source was processed


def test_folder_of_step_images_keeps_file_name_order(tmp_path):
    steps = tmp_path / "steps"
    steps.mkdir()
    photo = skimage.data.coffee()
    for name in ["b_02.png", "a_01.png", "c_03.png", "d_04.png"]:  # sorted by name: a, b, c, d
        order = sorted(["b_02.png", "a_01.png", "c_03.png", "d_04.png"]).index(name)
        img = np.full_like(photo, 255)
        rows = photo.shape[0] * (order + 1) // 4
        img[:rows] = photo[:rows]
        Image.fromarray(img).save(steps / name)
    (steps / "e_broken.png").write_bytes(b"not a png")
    src = Source(
        uri="steps",
        path=str(steps),
        task=TAXONOMY["emoji"],
        kind="images",
        images=tuple(sorted(str(p) for p in steps.iterdir())),
    )
    res = run_source(src, "f" * 64, build_stages(BuildConfig()), BuildConfig())
    assert res.status == "ok", res.reason
    frames = res.samples[0].meta["frames"]
    assert [f["file"] for f in frames] == ["a_01.png", "b_02.png", "c_03.png", "d_04.png"]
    assert [f["source_frame"] for f in frames] == [0, 1, 2, 3]  # positions in the folder's file list
    assert all(f["time"] is None for f in frames)
    assert res.drops["unreadable image"] == 1 and any("e_broken.png" in n for n in res.notes)


def test_unordered_folder_without_clip_is_rejected_with_the_reason(tmp_path):
    steps = tmp_path / "steps"
    steps.mkdir()
    for i in range(5):
        Image.fromarray(np.full((64, 64, 3), 40 * i, np.uint8)).save(steps / f"{i}.png")
    manifest = write_manifest(tmp_path, [{"dir": "steps", "task": "emoji", "ordered": False}])
    out = tmp_path / "out"
    config = tmp_path / "config.yaml"
    config.write_text("clip: {enabled: false}\n")
    assert main(["build", str(manifest), "--out", str(out), "--config", str(config), "--quiet"]) == 0
    row = json.loads((out / "report.json").read_text())["sources"][0]
    assert row["status"] == "rejected" and "needs the CLIP stage" in row["reason"]


def test_ordered_false_is_refused_outside_folders(tmp_path, capsys):
    manifest = write_manifest(tmp_path, [{"path": "a.mp4", "task": "emoji", "ordered": False}])
    assert main(["build", str(manifest), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert "sources[0]" in capsys.readouterr().err


@pytest.mark.parametrize("allowed,expected", [(1, 1), (2, 2)])
def test_a_long_video_with_two_works_gives_two_sequences(tmp_path, allowed, expected):
    path = tmp_path / "two_works.mp4"
    first, t1 = tutorial_frames(skimage.data.astronaut(), SMALL, script=SHORT, seed=1)
    second, t2 = tutorial_frames(skimage.data.chelsea(), SMALL, script=SHORT, seed=2)
    write_video(path, chain(first, second), 25, SMALL)
    cfg = BuildConfig(select=SelectConfig(sequences_per_source=allowed))
    res = run_source(
        Source(uri="x", path=str(path), task=TAXONOMY["emoji"], kind="video"),
        "e" * 64,
        build_stages(cfg),
        cfg,
    )
    assert res.status == "ok", res.reason
    assert [s.key for s in res.samples] == [f"emoji_{'e' * 16}_s{i}" for i in range(expected)]
    if expected == 2:
        a, b = ([f["source_frame"] for f in s.meta["frames"]] for s in res.samples)
        offset = t1.frames
        assert all(t1.process[0] <= i < t1.process[1] for i in a)
        assert all(t2.process[0] <= i - offset < t2.process[1] for i in b)
