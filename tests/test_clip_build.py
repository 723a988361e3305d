"""The CLIP stages inside `makeanything build`: on with a tiny random model (explicitly configured),
and `--require-clip` stopping before any work when the weights are missing."""

from __future__ import annotations

import io
import json
import shutil
import tarfile

import numpy as np
import pytest
import skimage.data
import yaml
from PIL import Image

from makeanything.cli import main
from testkit.tiny_clip import register_tiny, write_random_model
from tests.conftest import write_manifest


@pytest.fixture(scope="module")
def built(tutorials, tmp_path_factory):
    d = tmp_path_factory.mktemp("clip-build")
    path, _ = tutorials["astronaut"]
    shutil.copy(path, d / "astronaut.mp4")
    steps = d / "unordered"
    steps.mkdir()
    photo = skimage.data.coffee()
    for i, name in enumerate(["q", "c", "x", "a", "m", "f"]):  # file names say nothing about the order
        img = np.full_like(photo, 255)
        img[: photo.shape[0] * (i + 1) // 6] = photo[: photo.shape[0] * (i + 1) // 6]
        Image.fromarray(img).save(steps / f"{name}.png")
    manifest = write_manifest(
        d,
        [
            {"path": "astronaut.mp4", "task": "portrait", "subject": "an astronaut"},
            {"dir": "unordered", "task": "emoji", "ordered": False},
        ],
    )
    model = write_random_model(d / "model", register_tiny(d / "configs"))
    # margin 2 keeps every frame: random weights must not decide anything here
    config = d / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "clip": {
                    "model": model,
                    "relevance_margin": 2.0,
                    "duplicate_similarity": 1.0,
                    "store_embeddings": True,
                }
            }
        )
    )
    out = d / "out"
    assert (
        main(
            ["build", str(manifest), "--out", str(out), "--workers", "1", "--config", str(config), "--quiet"]
        )
        == 0
    )
    return out, model


def _samples(out) -> list[dict]:
    found = []
    for shard in sorted((out / "shards").glob("*.tar")):
        with tarfile.open(shard) as tar:
            found += [
                json.load(io.BytesIO(tar.extractfile(m).read())) for m in tar if m.name.endswith(".json")
            ]
    return found


def test_build_with_clip_writes_clip_scores(built):
    out, model = built
    report = json.loads((out / "report.json").read_text())
    assert "CLIP stage on" in json.dumps(report) and model in json.dumps(report)
    samples = _samples(out)
    assert samples
    for s in samples:
        assert 0.0 <= s["scores"]["clip"] <= 100.0
        assert all("clip_relevance" in f and "clip_margin" in f for f in s["frames"])
        assert "clip_relevance" in s["scores"]["process"]
        emb = np.array([f["clip_embedding"] for f in s["frames"]])  # clip.store_embeddings: true
        assert emb.shape[0] == len(s["frames"]) and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-3)


def test_unordered_folder_is_put_in_clip_progress_order(built):
    out, _ = built
    row = next(r for r in json.loads((out / "report.json").read_text())["sources"] if r["uri"] == "unordered")
    assert row["status"] == "ok", row["reason"]
    sample = next(s for s in _samples(out) if s["task"]["id"] == "emoji")
    progress = [f["clip_progress"] for f in sample["frames"]]
    assert len(progress) == 4 and progress == sorted(progress)  # steps follow the CLIP progress order
    assert progress[0] == 0.0 and progress[-1] == 1.0  # the two ends of the progress path
    assert 0.0 <= sample["scores"]["process"]["clip_order_confidence"] <= 1.0


def test_require_clip_without_weights_exits_2_before_work(tutorials, tmp_path, capsys):
    path, _ = tutorials["astronaut"]
    shutil.copy(path, tmp_path / "astronaut.mp4")
    manifest = write_manifest(tmp_path, [{"path": "astronaut.mp4", "task": "portrait"}])
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"clip": {"cache_dir": str(tmp_path / "empty-cache")}}))
    out = tmp_path / "out"
    assert main(["build", str(manifest), "--out", str(out), "--config", str(config), "--require-clip"]) == 2
    err = capsys.readouterr().err
    assert "laion2b_s34b_b79k" in err and "empty-cache" in err and "clip.download" in err
    assert not (out / "shards").exists() or not any((out / "shards").iterdir())
