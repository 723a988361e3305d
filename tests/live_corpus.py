"""A small live corpus for the snapshot and vacuum tests: step folders (fast to build, no video decode), one
source per shard, everything in the train split; helpers to change a folder, run the CLI in a real second
process, and check that every snapshot on storage still has all its files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import skimage.data
import yaml
from PIL import Image

from pipeline.io.storage import Storage
from tests.mixed_corpus import write_steps

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = {"cat": (skimage.data.chelsea, "painting", 9), "rocket": (skimage.data.rocket, "emoji", 4)}
PHOTOS["coins"] = (lambda: np.stack([skimage.data.coins()] * 3, -1), "clay-toys", 4)


def small(photo: np.ndarray, side: int = 96) -> np.ndarray:
    img = Image.fromarray(photo)
    img.thumbnail((side, side))
    return np.asarray(img.convert("RGB"))


def make_sources(d: Path, names: list[str] = ("cat", "rocket", "coins")) -> tuple[Path, Path]:
    """Step folders under d/steps and their manifest; a config with one source per shard, no val split."""
    for name in names:
        photo, _, n = PHOTOS[name]
        write_steps(d / "steps" / name, small(photo()), n)
    manifest = d / "manifest.yaml"
    manifest.write_text(
        yaml.safe_dump(
            {
                "sources": [
                    {"dir": f"steps/{n}", "task": PHOTOS[n][1], "id": n, "subject": f"a {n}"} for n in names
                ]
            }
        )
    )
    return manifest, write_config(d)


def write_config(d: Path, **snapshots) -> Path:
    config = d / ("config.yaml" if not snapshots else "config-snap.yaml")
    config.write_text(
        yaml.safe_dump(
            {
                "cluster": {"workers": 1, "processes": False},
                "shards": {"samples_per_shard": 1, "val_fraction": 0.0},
                **({"snapshots": snapshots} if snapshots else {}),
            }
        )
    )
    return config


def touch_step(d: Path, name: str, seed: int) -> None:
    """Change one image of a folder (its content, so the source is rebuilt and its old shard retired)."""
    path = sorted((d / "steps" / name).glob("*.png"))[-1]
    img = np.asarray(Image.open(path).convert("RGB")).copy()
    img[: 4 + seed % 8, : 4 + seed % 8] = (seed * 37) % 256
    Image.fromarray(img).save(path)


def cli(*argv: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """`makeanything ARGV` in a real second process, from this worktree."""
    proc = subprocess.run(
        [sys.executable, "-m", "makeanything.cli", *argv],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def missing_files(out: Path | str) -> list[str]:
    """Every shard a snapshot on storage (or dataset.json) lists that is not there: must stay []."""
    storage = Storage(out)
    have = set(storage.list("shards"))
    lists = {n: json.loads(storage.read(f"snapshots/{n}"))["shards"] for n in storage.list("snapshots")}
    if storage.exists("dataset.json"):
        lists["dataset.json"] = json.loads(storage.read("dataset.json"))["shards"]
    return [
        f"{w}: shards/{s['name']} missing"
        for w, shards in lists.items()
        for s in shards
        if s["name"] not in have
    ]
