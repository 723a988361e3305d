"""Draw an SVG or stroke item progressively and choose its N steps.

Small renders of the partial documents (the first k drawable units, k at up to ``max_prefixes`` cut
points) measure what each addition changes. Additions that change nothing visible are skipped; the
steps are then chosen among the visible additions so that the share of the final picture already in
place rises evenly from the first addition to the whole (``pick_steps``, the same choice as for footage),
each step completing at least ``min_progress_step`` more. Only the chosen steps are rendered at cell
size; the last step is the whole document.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import cv2
import numpy as np

from pipeline.config import VectorConfig
from pipeline.drawings.collect import read_item
from pipeline.drawings.render import render
from pipeline.drawings.strokes import parse_drawing
from pipeline.drawings.svg import SvgDrawing
from pipeline.stages.select import pick_steps
from pipeline.work import Frame, Reject, Sequence, Work


@dataclass
class Step:
    shown: int  # drawable units painted in this step
    progress: float  # share of the final picture in place (0..1)
    added: float  # share of the picture this step changed since the previous one


def changed(a: np.ndarray, b: np.ndarray, tol: float) -> np.ndarray:
    """Where two RGB uint8 images differ by more than ``tol`` in any channel (cheaper than an int16 max)."""
    d = cv2.absdiff(a, b)
    return np.maximum(np.maximum(d[..., 0], d[..., 1]), d[..., 2]) > tol


def cut_points(units: int, most: int) -> list[int]:
    """Prefix lengths to measure: every one, or ``most`` evenly spaced ones (always ending at ``units``)."""
    if units <= most:
        return list(range(1, units + 1))
    return sorted({int(round(x)) for x in np.linspace(1, units, most)})


class _Clock:
    def __init__(self, seconds: float) -> None:
        self.seconds, self.end = seconds, time.perf_counter() + seconds

    def check(self) -> None:
        if time.perf_counter() > self.end:
            raise Reject(f"rendering too slow: still not done after {self.seconds:g} s")


def plan_steps(drawing: SvgDrawing, n: int, cfg: VectorConfig, clock: _Clock) -> tuple[list[Step], int]:
    """The N steps (and the number of visible additions); raises Reject when the drawing cannot give N."""
    cuts = cut_points(len(drawing.units), cfg.max_prefixes)
    tol = cfg.pixel_tolerance * 255
    prev = np.full((cfg.analysis_size, cfg.analysis_size, 3), 255, np.uint8)
    images, added = [], []
    for k in cuts:
        clock.check()
        img = render(drawing.document(k, cfg.analysis_size), drawing.text)
        added.append(float(changed(img, prev, tol).mean()))
        images.append(img)
        prev = img
    visible = [i for i, a in enumerate(added) if a >= cfg.min_addition and a > 0]
    if len(visible) < n:
        raise Reject(
            f"too few visible additions: {len(visible)} of {len(cuts)} measured additions change the "
            f"picture, a {n}-step sequence needs {n}"
        )
    final = images[visible[-1]]
    differs = [changed(images[i], final, tol) for i in visible]
    ever = np.logical_or.reduce(differs + [changed(np.full_like(final, 255), final, tol)])
    total = max(int(ever.sum()), 1)
    progress = [1.0 - float(d.sum()) / total for d in differs]
    chosen = pick_steps(progress, n, cfg.min_progress_step)
    if chosen is None:
        raise Reject(
            f"not enough distinct steps: {len(visible)} visible additions do not give {n} steps that "
            f"each complete at least {cfg.min_progress_step:g} more of the picture"
        )
    steps, last = [], np.full_like(final, 255)
    for j in chosen:
        img = images[visible[j]]
        steps.append(
            Step(cuts[visible[j]], round(progress[j], 4), round(float(changed(img, last, tol).mean()), 4))
        )
        last = img
    steps[-1].shown = len(drawing.units)  # the last step is the whole document
    return steps, len(visible)


class DrawProgressively:
    """The stage for ``svg`` and ``strokes`` items: item bytes -> one sequence of N rendered steps."""

    name = "render"

    def __init__(self, cfg: VectorConfig) -> None:
        self.cfg = cfg

    def __call__(self, work: Work) -> Work:
        src, cfg, n = work.source, self.cfg, work.source.task.frames
        if src.problem:
            raise Reject(src.problem)
        try:
            data = read_item(src, cfg.max_bytes)
        except (OSError, ValueError) as e:
            raise Reject(f"unreadable item: {e}") from None
        clock = _Clock(cfg.max_seconds)
        times: list[float | None] = []
        duration = None
        if src.kind == "strokes":
            sketch = parse_drawing(data, n, cfg)
            drawing = SvgDrawing(sketch.svg, cfg)
            times, duration = sketch.times, sketch.duration
            if src.subject is None and sketch.word:
                work.source = replace(src, subject=sketch.word)
        else:
            drawing = SvgDrawing(data, cfg)
        steps, visible = plan_steps(drawing, n, cfg, clock)
        side = work.source.task.layout.content
        frames = []
        for s in steps:
            clock.check()
            frames.append(
                Frame(
                    source_frame=s.shown,
                    time=times[s.shown - 1] if times else None,
                    image=render(drawing.document(s.shown, side), drawing.text),
                    scores={"progress": s.progress, "added": s.added},
                )
            )
        work.probe = {
            "kind": src.kind,
            "frame_count": len(drawing.units),
            "width": round(drawing.width),
            "height": round(drawing.height),
            "duration": duration,
            "fps": None,
            "codec": None,
            "rotation": 0,
        }
        work.sequences = [
            Sequence(
                frames=frames, segment_scores={"elements": len(drawing.units), "visible_additions": visible}
            )
        ]
        return work
