"""Shared fixtures: tutorial-like videos (generated once per session) and manifests for them."""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import skimage.data
import yaml

from pipeline.demo.synthetic import Script, Truth, make_tutorial

# The refresh/crash/S3/distributed tests share a corpus and a reference build (fixtures there);
# the caption tests talk to a loopback chat-completions server (pipeline/caption/echo_server.py;
# the `vlm` fixture in tests/vlm_server.py).
pytest_plugins = ["tests.refresh_support", "tests.mixed_corpus", "tests.vlm_server"]

OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
SMALL = (320, 180)
SHORT = Script(intro=1.0, talk=2.0, process=10.0, hold=1.5, outro=1.5, hand_bursts=3, hand_seconds=1.0)


@pytest.fixture(scope="session")
def tutorials(tmp_path_factory) -> dict[str, tuple[Path, Truth]]:
    """Three short tutorials of real photos: {name: (path, ground truth)}."""
    folder = tmp_path_factory.mktemp("tutorials")
    out = {}
    for seed, name in enumerate(["astronaut", "coffee", "chelsea"]):
        path = folder / f"{name}.mp4"
        out[name] = (
            path,
            make_tutorial(path, getattr(skimage.data, name)(), size=SMALL, script=SHORT, seed=seed),
        )
    return out


def write_manifest(folder: Path, sources: list[dict]) -> Path:
    path = folder / "manifest.yaml"
    path.write_text(yaml.safe_dump({"sources": sources}, sort_keys=False))
    return path


@contextlib.contextmanager
def serve_folder(root: Path) -> Iterator[str]:
    """A real HTTP server on a free loopback port serving ``root``; yields its base URL."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
