"""Benchmark: how well the builder finds the process in tutorial footage of each kind (testkit/footage.py),
graded against the ground truth of every frame; and that real footage with no process yields nothing.

Per phenomenon it prints the share of videos that give a sequence and the share of those sequences that
are good (every step from the process, unblended and free of the hand, true progress strictly rising,
first early, last finished). Target: both >= 0.9 for every phenomenon, and no sequence from OpenCV's
sample clips (opencv-doc), built as a 9-step and as a 4-step task.

    .venv/bin/python -m bench.fidelity [--videos 4] [--first 0] [--size 384x216] [--only multishot,crossfade]

``--first 16`` grades seeds nobody tuned on (the tests and the usual figures use seeds from 0);
``--size 1280x720`` renders the footage at a tutorial's usual size instead of the small default.
"""

from __future__ import annotations

import argparse
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from pipeline.config import BuildConfig, ClipConfig
from pipeline.run.worker import run_source
from pipeline.stages.chain import build_stages
from pipeline.taxonomy import Taxonomy
from pipeline.work import Source
from testkit.footage import PHENOMENA, PHOTOS, grade, make_footage

OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
CLIPS = ("Megamind.avi", "Megamind_bugy.avi", "vtest.avi", "tree.avi")
TASKS = ("painting", "clay-toys")  # 9 and 4 steps
CONFIG = BuildConfig(clip=ClipConfig(enabled=False))


def _build(path: Path, task: str):
    src = Source(uri=str(path), path=str(path), task=Taxonomy.load()[task], kind="video")
    return run_source(src, "0" * 64, build_stages(CONFIG), CONFIG)


def one_video(args: tuple) -> tuple[str, str, bool, list[str], str]:
    """(phenomenon, seed, task, folder[, (w, h)]) -> (phenomenon, task, gave a sequence, what is wrong
    with it, why it was rejected)."""
    phenomenon, seed, task, folder, *size = args
    path = Path(folder) / f"{phenomenon}-{seed}-{task}.mp4"  # one file per job: jobs run in parallel
    truth = make_footage(
        path, phenomenon, PHOTOS[seed % len(PHOTOS)], seed=seed, **({"size": size[0]} if size else {})
    )
    res = _build(path, task)
    if res.status != "ok":
        return phenomenon, task, False, [], res.reason
    return phenomenon, task, True, grade(res.samples[0].meta["frames"], truth), ""


def one_clip(args: tuple[str, str]) -> tuple[str, str, str, str]:
    name, task = args
    res = _build(OPENCV_DATA / name, task)
    return name, task, res.status, res.reason


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=4, help="videos per phenomenon and task")
    ap.add_argument("--first", type=int, default=0, help="first seed (16: seeds not used while tuning)")
    ap.add_argument("--size", default="384x216", help="frame size of the rendered footage, WxH")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--only", default="", help="comma-separated phenomena (default: all)")
    ap.add_argument("--verbose", action="store_true", help="print why each failing video failed")
    args = ap.parse_args()
    phenomena = [p for p in args.only.split(",") if p] or list(PHENOMENA)
    with tempfile.TemporaryDirectory() as tmp, ProcessPoolExecutor(args.workers) as pool:
        size = tuple(int(x) for x in args.size.lower().split("x"))
        seeds = range(args.first, args.first + args.videos)
        jobs = [(p, s, t, tmp, size) for p in phenomena for t in TASKS for s in seeds]
        results = list(pool.map(one_video, jobs))
        clips = list(pool.map(one_clip, [(c, t) for c in CLIPS for t in TASKS if (OPENCV_DATA / c).exists()]))
    print(f"seeds {seeds.start}-{seeds.stop - 1}, {size[0]}x{size[1]}")
    print(f"{'phenomenon':<16} {'task':<10} {'videos':>6} {'yield':>6} {'good':>6}")
    worst = 1.0
    for p in phenomena:
        for t in TASKS:
            rows = [(seed, *r) for (_, seed, *_), r in zip(jobs, results) if r[0] == p and r[1] == t]
            made = [r for r in rows if r[3]]
            good = [r for r in made if not r[4]]
            y, g = len(made) / len(rows), (len(good) / len(made) if made else 0.0)
            worst = min(worst, y, g)
            print(f"{p:<16} {t:<10} {len(rows):>6} {y:>6.2f} {g:>6.2f}")
            if args.verbose:
                for seed, _, _, ok, wrong, reason in rows:
                    if not ok:
                        print(f"    seed {seed} rejected: {reason[:300]}")
                    elif wrong:
                        print(f"    seed {seed} bad: {'; '.join(wrong)[:300]}")
    print(f"worst share over phenomena: {worst:.2f} (target >= 0.90)")
    if not clips:
        print("opencv-doc clips: not installed (apt-get install opencv-doc)")
    made = [c for c in clips if c[2] == "ok"]
    for name, task, status, reason in clips:
        print(f"no-process clip {name:<18} {task:<10} {status:<9} {reason[:110]}")
    print(f"sequences from no-process clips: {len(made)} of {len(clips)} builds (target 0)")


if __name__ == "__main__":
    main()
