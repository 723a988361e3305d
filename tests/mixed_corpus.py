"""A corpus built from every source kind (local video, folder of step images, URL over loopback HTTP) plus a
source that is rejected: the schema, dataset-card, review-site and curation tests read it."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import yaml
from PIL import Image

from makeanything.cli import main
from pipeline.corpus.index import split_of
from pipeline.demo.synthetic import _talking_head, write_video
from tests.conftest import SMALL, serve_folder, write_manifest

LICENSE = {"license": "CC-BY-4.0", "attribution": "Jane Painter, https://example.org/jane"}


@dataclass(frozen=True)
class Mixed:
    out: Path
    manifest: Path
    config: Path
    index: dict


def write_steps(folder: Path, photo: np.ndarray, n: int) -> None:
    """A folder of n step images: the photo revealed top to bottom on white, one band per step."""
    folder.mkdir(parents=True)
    for i in range(n):
        img = np.full_like(photo, 255)
        rows = photo.shape[0] * (i + 1) // n
        img[:rows] = photo[:rows]
        Image.fromarray(img).save(folder / f"step_{i + 1:02d}.png")


def _val_fraction(shas: list[str]) -> float:
    """A val fraction that puts at least one source in each split (the split is a hash of the source)."""
    for f in np.arange(0.05, 1.0, 0.05):
        if len({split_of(s, float(f)) for s in shas}) == 2:
            return round(float(f), 2)
    raise AssertionError("no val fraction splits these sources")


@pytest.fixture(scope="session")
def mixed_corpus(tutorials, tmp_path_factory) -> Mixed:
    d = tmp_path_factory.mktemp("mixed")
    www = d / "www"
    www.mkdir()
    shutil.copy(tutorials["coffee"][0], www / "coffee.mp4")
    shutil.copy(tutorials["astronaut"][0], d / "astronaut.mp4")
    write_steps(d / "steps" / "cat", skimage.data.chelsea(), 9)
    write_steps(d / "steps" / "rocket", skimage.data.rocket(), 4)
    write_video(d / "talk.mp4", (_talking_head(180, 320, i / 25) for i in range(150)), 25, SMALL)
    shas = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (www / "coffee.mp4", d / "astronaut.mp4")]
    config = d / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "cluster": {"workers": 1, "processes": False},
                "shards": {"samples_per_shard": 2, "val_fraction": _val_fraction(shas)},
            }
        )
    )
    with serve_folder(www) as base:
        manifest = write_manifest(
            d,
            [
                {
                    "path": "astronaut.mp4",
                    "task": "portrait",
                    "subject": "an astronaut",
                    "id": "astro",
                    **LICENSE,
                },
                {
                    "url": f"{base}/coffee.mp4",
                    "task": "oil-painting",
                    "subject": "a cup of coffee",
                    "id": "coffee",
                },
                {
                    "dir": "steps/cat",
                    "task": "painting",
                    "subject": "a cat",
                    "id": "cat",
                    "license": "CC0-1.0",
                },
                {"dir": "steps/rocket", "task": "emoji", "subject": "a rocket", "id": "rocket"},
                {"path": "talk.mp4", "task": "painting", "id": "talk"},
            ],
        )
        out = d / "out"
        assert main(["build", str(manifest), "--out", str(out), "--config", str(config), "--quiet"]) == 0
    return Mixed(out, manifest, config, json.loads((out / "dataset.json").read_text()))
