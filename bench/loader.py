"""Loader throughput: samples/s per CPU core that training.data delivers from local shards, decoded and
resized (cell by cell) to tensors, with the decode-only cost measured in the same run as the baseline.

    .venv/bin/python -m bench.loader [--data BUILD_OR_SHARDS] [--samples 200] [--workers 0 2]

(Run it as a module from the repository root: `python bench/loader.py` would let bench/pipeline.py
shadow the pipeline package.)

Without --data it writes shards of full-size grids (1056 px 3x3 and 1024 px 2x2) tiled from photo crops.
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage import data as photos
from webdataset.tariterators import group_by_keys, tar_file_expander

from pipeline.corpus.shards import Sample, ShardWriter, encode_jpeg
from pipeline.layout import tile
from pipeline.taxonomy import Taxonomy
from testkit.samples import made_meta
from training.data import DECODED, HeadResolver, ShardStream, expand_shards, open_shard


def photo_crops(rng: np.random.Generator, src: np.ndarray, n: int) -> list[np.ndarray]:
    """``n`` random crops of two thirds of a photo: distinct frames with real image content."""
    frames = []
    for _ in range(n):
        y, x = rng.integers(0, src.shape[0] // 3), rng.integers(0, src.shape[1] // 3)
        frames.append(src[y : y + src.shape[0] * 2 // 3, x : x + src.shape[1] * 2 // 3])
    return frames


def write_demo(folder: Path, n: int) -> None:
    """``n`` grids per layout (3x3 painting, 2x2 clay-toys) from crops of scikit-image photos."""
    tasks = Taxonomy.load()
    rng = np.random.default_rng(0)
    srcs = [photos.astronaut(), photos.coffee(), photos.chelsea(), photos.rocket()]
    with ShardWriter(folder, samples_per_shard=50) as w:
        for i in range(n):
            for task in (tasks["painting"], tasks["clay-toys"]):
                frames = photo_crops(rng, srcs[i % len(srcs)], task.frames)
                key = f"{task.id}_bench_s{i}"
                w.write(
                    Sample(
                        key,
                        encode_jpeg(tile(frames, task.layout)),
                        task.caption(),
                        made_meta(
                            key,
                            task.describe(),
                            task.layout.describe(),
                            task.caption(),
                            uri=f"bench/{i}",
                            sha256=f"{i:064x}",
                            kind="synthetic",
                        ),
                    )
                )


def decode_only(urls: list[str], n: int) -> float:
    """Baseline: seconds per sample to read the tar and decode the JPEG, nothing else."""
    t0, count = time.perf_counter(), 0
    for raw in group_by_keys(
        tar_file_expander({"url": u, "stream": open_shard(u)} for u in urls), suffixes=DECODED
    ):
        Image.open(io.BytesIO(raw["jpg"])).convert("RGB").load()
        count += 1
        if count == n:
            break
    return (time.perf_counter() - t0) / count


def loader_rate(urls: list[str], n: int, workers: int, cell: int | None) -> float:
    """Samples/s delivered as batches of tensors by the training loader."""
    stream = ShardStream(
        urls,
        HeadResolver(Taxonomy.load(), {}),
        batch_size=1,
        shuffle_buffer=16,
        cell=cell,
        token=16,
        seed=0,
        workers=workers,
        resampled=workers > len(urls),
    )
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=workers)
    it = iter(loader)
    next(it)  # start-up (worker spawn, first shard open) is not throughput
    t0 = time.perf_counter()
    for _ in range(n):
        next(it)
    return n / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", nargs="+")
    p.add_argument("--samples", type=int, default=200)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    p.add_argument("--cell", type=int, default=None, help="resize cells to this side (default: native)")
    a = p.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        if a.data:
            urls = expand_shards(a.data)
        else:
            write_demo(Path(tmp), a.samples // 2 + 8)
            urls = expand_shards([tmp])
        base = 1 / decode_only(urls, a.samples)
        print(f"cores available: {len(os.sched_getaffinity(0))}; shards: {len(urls)}")
        print(f"baseline, tar read + JPEG decode only (1 core): {base:8.1f} samples/s")
        for w in a.workers:
            rate = loader_rate(urls, a.samples, w, a.cell)
            cores = max(w, 1)
            print(
                f"loader, {w} worker(s): {rate:8.1f} samples/s = {rate / cores:8.1f} /core "
                f"({rate / cores / base:.2f}x the decode-only baseline per core)"
            )


if __name__ == "__main__":
    main()
