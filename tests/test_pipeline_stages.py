"""Stages on generated tutorials (intro card, talking head, a process with a hand, a finished hold, outro)
and on real footage with no making process (OpenCV's sample trailer and street camera)."""

from __future__ import annotations

import pytest

from pipeline.config import BuildConfig
from pipeline.run.worker import run_source
from pipeline.stages.chain import build_stages
from pipeline.stages.select import pick_steps
from pipeline.taxonomy import Taxonomy
from pipeline.work import Source
from tests.conftest import OPENCV_DATA

TAXONOMY = Taxonomy.load()
CONFIG = BuildConfig()


def _run(path, task="painting"):
    src = Source(uri=str(path), path=str(path), task=TAXONOMY[task], kind="video")
    return run_source(src, "0" * 64, build_stages(CONFIG), CONFIG)


@pytest.mark.parametrize("task", ["painting", "oil-painting"])  # 9 and 4 steps
def test_chosen_frames_come_from_the_process_in_order_without_the_hand(tutorials, task):
    for name, (path, truth) in tutorials.items():
        res = _run(path, task)
        assert res.status == "ok", (name, res.reason)
        frames = res.samples[0].meta["frames"]
        idx = [f["source_frame"] for f in frames]
        assert len(idx) == TAXONOMY[task].frames
        assert idx == sorted(idx) and len(set(idx)) == len(idx), f"{name}: steps not in time order: {idx}"
        assert all(truth.process[0] <= i < truth.process[1] for i in idx), (
            f"{name}: a step outside the process: {idx}"
        )
        assert not set(idx) & truth.hand, f"{name}: the hand covers steps {sorted(set(idx) & truth.hand)}"
        assert truth.finished[0] <= idx[-1] < truth.finished[1], (
            f"{name}: last step {idx[-1]} is not the finished work"
        )
        painted = [truth.progress[i] for i in idx]
        assert painted[0] < 0.35, f"{name}: first step is not an early stage ({painted[0]:.2f} painted)"
        assert all(b > a for a, b in zip(painted, painted[1:])), f"{name}: progress does not rise: {painted}"


def test_frame_times_match_source_frames(tutorials):
    path, truth = tutorials["astronaut"]
    for f in _run(path).samples[0].meta["frames"]:
        assert f["time"] == pytest.approx(f["source_frame"] / truth.fps, abs=0.5 / truth.fps)


@pytest.mark.parametrize(
    "name,why",
    [
        ("Megamind.avi", "everything moves at once"),  # a film trailer
        ("vtest.avi", "changes without accumulating"),
    ],
)  # a street camera
def test_real_footage_without_a_process_is_rejected(name, why):
    path = OPENCV_DATA / name
    if not path.exists():
        pytest.skip("Debian's opencv-doc is not installed (apt-get install opencv-doc)")
    # Short shots would be rejected for their length alone; let them through to test the process test itself.
    config = CONFIG.model_copy(update={"process": CONFIG.process.model_copy(update={"min_seconds": 1.5})})
    src = Source(uri=str(path), path=str(path), task=TAXONOMY["painting"], kind="video")
    res = run_source(src, "0" * 64, build_stages(config), config)
    assert res.status == "rejected" and "no making process" in res.reason and why in res.reason, res.reason
    assert not res.samples


def test_pick_steps_spreads_over_progress_and_keeps_ends():
    progress = [0.0, 0.01, 0.1, 0.2, 0.26, 0.3, 0.5, 0.52, 0.7, 0.75, 0.9, 1.0]
    assert pick_steps(progress, 4, 0.02) == [0, 5, 8, 11]  # nearest to 0, 1/3, 2/3, 1
    assert pick_steps([0.0, 0.5, 0.5, 1.0], 4, 0.02) is None  # two alike cannot both be steps
    assert pick_steps([0.0, 1.0], 3, 0.0) is None


def test_display_rotation_is_applied_to_frames(tmp_path):
    """A phone video stored landscape with a 90-degree display matrix is analysed as players show it."""
    import av
    import numpy as np

    from pipeline.stages.decode import Decode
    from pipeline.stages.probe import Probe
    from pipeline.work import Work

    path = tmp_path / "rotated.mp4"
    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 320, 180, "yuv420p"
        s.set_display_rotation(90)  # counter-clockwise, as VideoFrame.rotation reads it back
        for _ in range(30):
            f = np.full((180, 320, 3), 255, np.uint8)
            f[:40, :60] = (255, 0, 0)  # a red mark in the stored top-left corner
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    work = Work(Source(uri=str(path), path=str(path), task=TAXONOMY["painting"], kind="video"))
    Decode(CONFIG.analysis)(Probe()(work))
    assert work.probe["rotation"] == 90
    img = work.frames[0].image
    assert img.shape[:2] == (320, 180)  # portrait after rotation
    assert img[-5, 5, 1] < 50 and img[5, 5, 1] > 200  # the mark turned to the bottom-left


def test_frames_are_cropped_to_the_work(tutorials):
    """The grid shows the canvas, not the desk around it."""
    path, truth = tutorials["coffee"]
    res = _run(path)
    box = res.samples[0].meta["scores"]["process"]["crop"]
    w, h = 320, 180  # tests.conftest.SMALL
    m = CONFIG.process.crop_margin
    x0, y0, x1, y1 = (
        truth.canvas[0] - m * w,
        truth.canvas[1] - m * h,
        truth.canvas[2] + m * w,
        truth.canvas[3] + m * h,
    )
    got = (box[0] * w, box[1] * h, box[2] * w, box[3] * h)
    inter = max(0, min(got[2], x1) - max(got[0], x0)) * max(0, min(got[3], y1) - max(got[1], y0))
    union = (got[2] - got[0]) * (got[3] - got[1]) + (x1 - x0) * (y1 - y0) - inter
    assert inter / union > 0.9, (got, (x0, y0, x1, y1))
