"""Refresh benchmark (prints figures, not a test): a full build of N tutorial videos, then a refresh after
adding 10% new ones (target: refresh <= 15% of the full build); the full build with 1 vs 2 worker
processes (target speed-up >= 1.7x on 2 cores); and a refresh with nothing changed over 10,000 sources,
and over 1 GB vs 8 GB of source bytes (target: independent of bytes, <= 5 s for 10,000 sources), next
to the same refresh with --verify-content (which reads every byte, as every refresh used to).

The video figures come from ``--repeat`` rounds (1-worker build, 2-worker build, refresh), each
round's ratios sharing its load; medians are the figures, and each round prints the load average,
since other jobs on the machine take cores from the 2-worker build first.

    .venv/bin/python -m bench.refresh [--sources 20] [--noop-sources 10000] [--gb 1 8] [--repeat 3] [--work DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import tempfile
import time
from pathlib import Path
from statistics import median

import numpy as np
import skimage.data
import yaml

from pipeline.config import BuildConfig
from pipeline.demo.synthetic import make_tutorial
from pipeline.run.driver import build

PHOTOS = [
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "cat",
    "immunohistochemistry",
    "retina",
    "hubble_deep_field",
]


def _videos(folder: Path, n: int) -> list[dict]:
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for i in range(n):
        path = folder / f"v{i:03d}.mp4"
        if not path.exists():
            photo = np.asarray(getattr(skimage.data, PHOTOS[i % len(PHOTOS)])())[..., :3]
            make_tutorial(path, photo, seed=i)
        entries.append({"path": path.name, "task": "painting", "id": f"v{i:03d}"})
    return entries


def _timed(manifest: Path, out: Path, workers: int, **kw: bool) -> tuple[float, dict]:
    cfg = BuildConfig().model_copy(
        update={"cluster": BuildConfig().cluster.model_copy(update={"workers": workers})}
    )
    t0 = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):
        res = build(manifest, out, cfg, progress=False, **kw)
    return time.perf_counter() - t0, res.summary


def _noop(work: Path, n: int, total_bytes: int) -> tuple[float, float, dict]:
    """``n`` files adding up to ``total_bytes`` (sparse: they take no disk), built once (each is rejected
    at once as not a video, which records it in the ledger), then refreshed with nothing changed.
    Returns (no-op refresh s, the same with --verify-content s, the no-op's summary)."""
    folder = work / f"noop-{n}-{total_bytes >> 20}M"
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "src").mkdir(parents=True)
    for i in range(n):  # distinct contents (duplicates would be dropped), the rest a hole
        with open(folder / "src" / f"f{i:06d}.mp4", "wb") as f:
            f.write(i.to_bytes(4, "big"))
            f.truncate(max(4, total_bytes // n))
    manifest = folder / "m.yaml"
    manifest.write_text(yaml.safe_dump({"sources": [{"glob": "src/*.mp4", "task": "painting"}]}))
    _timed(manifest, folder / "out", 2)
    noop, summary = _timed(manifest, folder / "out", 2)
    verify, _ = _timed(manifest, folder / "out", 2, verify_content=True)
    shutil.rmtree(folder)
    return noop, verify, summary


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sources", type=int, default=20)
    ap.add_argument("--noop-sources", type=int, default=10_000)
    ap.add_argument("--gb", type=int, nargs=2, default=[1, 8])
    ap.add_argument("--repeat", type=int, default=3, help="rounds of the video figures; medians are reported")
    ap.add_argument("--work", default=None)
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-refresh-"))
    many, _, s_many = _noop(work, args.noop_sources, args.noop_sources)
    print(
        f"refresh with nothing changed, {args.noop_sources} sources: {many:6.2f} s "
        f"(skipped {s_many['skipped']}; target <= 5 s)"
    )
    for gb in args.gb:
        noop, verify, s_gb = _noop(work, 8, gb << 30)
        print(
            f"refresh with nothing changed, 8 sources of {gb} GB in all: {noop:6.2f} s (skipped {s_gb['skipped']}); "
            f"with --verify-content: {verify:6.2f} s"
        )
    new = max(1, args.sources // 10)
    entries = _videos(work / "videos", args.sources + new)
    base, more = work / "videos" / "base.yaml", work / "videos" / "more.yaml"
    base.write_text(yaml.safe_dump({"sources": entries[: args.sources]}))
    more.write_text(yaml.safe_dump({"sources": entries}))
    shutil.rmtree(work / "warmup", ignore_errors=True)
    _timed(base, work / "warmup", 2)  # page cache and first imports, so neither timed build pays them
    print(f"corpus: {args.sources} tutorial videos (640x360, 26 s); refresh adds {new}")
    rounds = []
    for r in range(args.repeat):
        for d in ("out2", "out1"):
            shutil.rmtree(work / d, ignore_errors=True)
        load = os.getloadavg()[0]
        full1, _ = _timed(base, work / "out1", 1)
        full2, s_full = _timed(base, work / "out2", 2)
        refresh, s_ref = _timed(more, work / "out2", 2)
        rounds.append((full1, full2, refresh))
        print(
            f"round {r + 1} (load average {load:.1f} on {os.cpu_count()} cores): full build 1 worker {full1:.1f} s, "
            f"2 workers {full2:.1f} s ({s_full['ok']} ok, {s_full['new_samples']} samples), refresh {refresh:.1f} s "
            f"(processed {s_ref['processed']}, skipped {s_ref['skipped']})",
            flush=True,
        )
    full1, full2, refresh = (median(x) for x in zip(*rounds))
    print(f"medians of {args.repeat} rounds:")
    print(f"full build, 2 workers:  {full2:7.1f} s")
    print(
        f"refresh (+{new} sources):  {refresh:7.1f} s  -> {100 * median(r / f for _, f, r in rounds):.1f}% of "
        "the full build (target <= 15%)"
    )
    print(
        f"full build, 1 worker:   {full1:7.1f} s  -> 2-worker speed-up {median(a / b for a, b, _ in rounds):.2f}x "
        "(target >= 1.7x)"
    )


if __name__ == "__main__":
    main()
