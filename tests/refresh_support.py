"""Shared by the refresh, crash, S3 and distributed tests: a small corpus made once per session, a
reference build of it, and helpers that read back what an output really holds."""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tarfile
import zlib
from pathlib import Path

import pytest
import skimage.data
import yaml

from makeanything.cli import main
from pipeline.demo.synthetic import _talking_head, make_tutorial, write_video
from tests.conftest import SHORT, SMALL

BIN = Path(sys.executable).parent
# One single-threaded worker thread: a killed driver takes its workers with it, and starts fast. Retention 0:
# each run ends with a vacuum that deletes what it retired (the kept-for-readers case: tests/test_vacuum.py).
FAST = {
    "cluster": {"workers": 1, "processes": False},
    "shards": {"samples_per_shard": 1},
    "snapshots": {"retention_days": 0},
}


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(path: Path, width: int = 40000, height: int = 40000) -> None:
    """A PNG whose header claims width x height pixels: Pillow refuses to open it (DecompressionBombError);
    the decode stage skips such an image like a corrupt one."""
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + _chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + _chunk(b"IEND", b"")
    )


def _png_failing(path: Path) -> None:
    """A PNG whose ICC profile inflates past Pillow's text-chunk limit: Pillow raises ValueError, which the
    decode stage does not expect, i.e. a *failed* source rather than a rejected one (for --retry-failed)."""
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0))
        + _chunk(b"iCCP", b"p\0\0" + zlib.compress(b"\0" * (2**20 + 10), 9))
        + _chunk(b"IDAT", zlib.compress(b"\0" * 200))
        + _chunk(b"IEND", b"")
    )


@pytest.fixture(scope="session")
def corpus(tutorials, tmp_path_factory) -> Path:
    """astronaut/coffee/chelsea (sequences), talk.mp4 (rejected), bomb/ (fails), extra.mp4 (a new source
    for refreshes). Manifests: base.yaml (the first five), more.yaml (base + extra)."""
    d = tmp_path_factory.mktemp("corpus")
    for name, (path, _) in tutorials.items():
        shutil.copy(path, d / f"{name}.mp4")
    write_video(d / "talk.mp4", (_talking_head(180, 320, i / 25) for i in range(150)), 25, SMALL)
    make_tutorial(d / "extra.mp4", skimage.data.coffee(), size=SMALL, script=SHORT, seed=11)
    (d / "bomb").mkdir()
    for i in range(3):
        _png_failing(d / "bomb" / f"step_{i}.png")
    base = [
        {"path": "astronaut.mp4", "task": "portrait", "id": "astro"},
        {"path": "coffee.mp4", "task": "oil-painting", "id": "coffee"},
        {"path": "chelsea.mp4", "task": "painting", "id": "cat"},
        {"path": "talk.mp4", "task": "painting", "id": "talk"},
        {"dir": "bomb", "task": "line-draw", "id": "bomb"},
    ]
    (d / "base.yaml").write_text(yaml.safe_dump({"sources": base}))
    (d / "more.yaml").write_text(
        yaml.safe_dump({"sources": base + [{"path": "extra.mp4", "task": "oil-painting", "id": "extra"}]})
    )
    return d


def write_config(folder: Path, **overrides: dict) -> Path:
    cfg = {k: {**v, **overrides.get(k, {})} for k, v in FAST.items()}
    cfg.update({k: v for k, v in overrides.items() if k not in cfg})
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="session")
def reference(corpus, tmp_path_factory) -> dict:
    """An uninterrupted build of more.yaml: {key: sample json} and its dataset.json."""
    d = tmp_path_factory.mktemp("reference")
    out = d / "out"
    assert (
        main(
            [
                "build",
                str(corpus / "more.yaml"),
                "--out",
                str(out),
                "--config",
                str(write_config(d)),
                "--quiet",
            ]
        )
        == 0
    )
    return {"keys": shard_keys(out), "index": json.loads((out / "dataset.json").read_text()), "out": out}


def shard_keys(out: Path) -> list[str]:
    """Every sample key in every tar under out/shards (duplicates kept), checking each tar is complete."""
    keys = []
    for tar_path in sorted((out / "shards").glob("*")):
        assert tar_path.suffix == ".tar", f"unexpected file {tar_path.name}"
        with tarfile.open(tar_path) as tar:
            names = tar.getnames()
            for name in names:
                assert tar.extractfile(name).read() is not None
        stems = sorted({n.split(".", 1)[0] for n in names})
        assert len(names) == 3 * len(stems), f"{tar_path.name}: incomplete samples"
        keys += stems
    return sorted(keys)


def no_temp_files(out: Path) -> list[Path]:
    return [
        p
        for p in out.rglob("*")
        if p.is_file() and (".tmp" in p.name or ".part" in p.name or ".staging" in p.parts)
    ]


def run_cli(args: list[str], env: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    """`makeanything ARGS` in its own process group; whatever it leaves running is killed afterwards."""
    proc = subprocess.Popen(
        [str(BIN / "makeanything"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        kill_group(proc.pid)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def inspect_verify(out: str) -> subprocess.CompletedProcess:
    return run_cli(["inspect", out, "--verify"])
