"""Caption-stage benchmark (prints figures, not a test): requests per second through the stage against the
loopback chat-completions server (pipeline/caption/echo_server.py, in its own process) answering after a fixed
latency, vs. the ideal ``max_concurrency / latency`` (target >= 0.8 of ideal); and the stage's own CPU
per sample with an instant server (cutting the 9 frames out of the grid, JPEG, base64, JSON, HTTP,
parsing, the cache).

    .venv/bin/python -m bench.caption [--samples 160] [--latency 0.2] [--concurrency 4 8 16]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import skimage.data

from bench.loader import photo_crops
from pipeline.caption.record import template_record
from pipeline.caption.stage import Captioner
from pipeline.config import CaptionConfig
from pipeline.corpus.shards import Sample, encode_jpeg
from pipeline.layout import tile
from pipeline.taxonomy import Taxonomy
from testkit.samples import made_meta

PHOTOS = ["astronaut", "coffee", "chelsea", "rocket"]


def samples(n: int, cell: int = 352) -> list[Sample]:
    """Painting grids (3x3, paper-sized with 352 px cells) cut from real photos, all different."""
    task = Taxonomy.load()["painting"]
    layout = task.layout.model_copy(update={"cell": cell})
    rng = np.random.default_rng(0)
    photos = [np.asarray(getattr(skimage.data, p)())[..., :3] for p in PHOTOS]
    out = []
    for i in range(n):
        frames = photo_crops(rng, photos[i % len(photos)], task.frames)
        key = f"painting_bench{i:04d}_s0"
        template = task.caption("a photo")
        meta = made_meta(
            key, task.describe(), layout.describe(), template, uri=key, sha256=f"{i:064d}", kind="images"
        )
        meta["caption"], meta["source"]["subject"] = template_record(template), "a photo"
        out.append(Sample(key, encode_jpeg(tile(frames, layout), 90), template, meta))
    return out


@contextlib.contextmanager
def server(latency: float) -> Iterator[str]:
    """The loopback server in its own process (so its work does not share our GIL); yields its URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.caption.echo_server", "--port", "0", "--latency", str(latency)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc.stdout.readline().strip()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def peak_in_flight(url: str) -> int:
    """The server's peak of concurrent requests since the last call (which resets it)."""
    with urllib.request.urlopen(url.rsplit("/v1", 1)[0] + "/stats?reset=1") as resp:
        return json.loads(resp.read())["max_in_flight"]


def run(url: str, batch: list[Sample], concurrency: int, cache: Path) -> tuple[float, float, dict]:
    """Wall and CPU seconds of this process to caption ``batch`` (one item per sample, as sources arrive)."""
    cfg = CaptionConfig(url=url, model="bench-vlm", max_concurrency=concurrency)
    cap = Captioner(cfg, Taxonomy.load(), cache)
    t0, c0 = time.perf_counter(), time.process_time()
    with contextlib.redirect_stderr(io.StringIO()):
        done = list(cap.stream(([s] for s in batch), lambda item: item, lambda item, got: got))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    summary = cap.summary()
    assert len(done) == len(batch) and summary["captioned"] == len(batch), summary
    return wall, cpu, summary


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=160)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[4, 8, 16])
    args = ap.parse_args()
    batch = samples(args.samples)
    print(f"{args.samples} samples (3x3 grids, 352 px cells, 9 frames sent per request)")
    with tempfile.TemporaryDirectory(prefix="bench-caption-") as tmp:
        with server(0.0) as url:
            wall, cpu, _ = run(url, batch, 4, Path(tmp) / "instant")
            print(
                f"instant server, 4 in flight: {args.samples / wall:6.1f} samples/s; stage cost "
                f"{1000 * cpu / args.samples:.1f} ms CPU per sample"
            )
        with server(args.latency) as url:
            for n in args.concurrency:
                peak_in_flight(url)
                wall, _, s = run(url, batch, n, Path(tmp) / f"c{n}")
                rps, ideal = s["requests"] / wall, n / args.latency
                print(
                    f"latency {1000 * args.latency:.0f} ms, max_concurrency {n:3d}: {rps:6.1f} requests/s, ideal "
                    f"{ideal:6.1f} -> {rps / ideal:.2f} of ideal (target >= 0.8); peak in flight {peak_in_flight(url)}"
                )
            n = args.concurrency[-1]
            peak_in_flight(url)
            wall, _, s = run(url, samples(args.samples, cell=64), n, Path(tmp) / "small")
            rps = s["requests"] / wall
            print(
                f"the same with small grids (64 px cells, little image work): max_concurrency {n}: {rps:6.1f} "
                f"requests/s -> {rps * args.latency / n:.2f} of ideal; peak in flight {peak_in_flight(url)}"
            )
            wall, _, s = run(url, batch, n, Path(tmp) / f"c{n}")
            print(
                f"rerun on a warm cache: {s['requests']} requests, {s['from_cache']} answers from the cache, "
                f"{wall:.2f} s"
            )


if __name__ == "__main__":
    main()
