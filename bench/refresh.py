"""Refresh benchmark (prints figures, not a test): a full build of N tutorial videos, then a refresh after
adding 10% new ones (target: refresh <= 15% of the full build); and the full build with 1 vs 2 worker
processes (target speed-up >= 1.7x on 2 cores).

    .venv/bin/python -m bench.refresh [--sources 20] [--work DIR]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import skimage.data
import yaml

from pipeline.build import build
from pipeline.config import BuildConfig
from pipeline.synthetic import make_tutorial

PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "cat", "immunohistochemistry", "retina", "hubble_deep_field"]


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


def _timed(manifest: Path, out: Path, workers: int) -> tuple[float, dict]:
    cfg = BuildConfig().model_copy(update={"cluster": BuildConfig().cluster.model_copy(update={"workers": workers})})
    t0 = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):
        res = build(manifest, out, cfg, progress=False)
    return time.perf_counter() - t0, res.summary


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sources", type=int, default=20)
    ap.add_argument("--work", default=None)
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-refresh-"))
    new = max(1, args.sources // 10)
    entries = _videos(work / "videos", args.sources + new)
    base, more = work / "videos" / "base.yaml", work / "videos" / "more.yaml"
    base.write_text(yaml.safe_dump({"sources": entries[:args.sources]}))
    more.write_text(yaml.safe_dump({"sources": entries}))
    for d in ("warmup", "out2", "out1"):
        shutil.rmtree(work / d, ignore_errors=True)

    _timed(base, work / "warmup", 2)  # page cache and first imports, so neither timed build pays them
    full1, _ = _timed(base, work / "out1", 1)
    full2, s_full = _timed(base, work / "out2", 2)
    refresh, s_ref = _timed(more, work / "out2", 2)
    print(f"corpus: {args.sources} tutorial videos (640x360, 26 s); refresh adds {new}")
    print(f"full build, 2 workers:  {full2:7.1f} s  ({s_full['ok']} ok, {s_full['new_samples']} samples)")
    print(f"refresh (+{new} sources):  {refresh:7.1f} s  (processed {s_ref['processed']}, skipped {s_ref['skipped']})"
          f"  -> {100 * refresh / full2:.1f}% of the full build (target <= 15%)")
    print(f"full build, 1 worker:   {full1:7.1f} s  -> 2-worker speed-up {full1 / full2:.2f}x (target >= 1.7x)")


if __name__ == "__main__":
    main()
