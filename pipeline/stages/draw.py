"""Draw an SVG or stroke item progressively and choose its N steps.

Small renders of the partial documents (the first k drawable units, k at up to ``max_prefixes`` cut
points) measure what each addition changes. Additions that change nothing visible are skipped; the
steps are then chosen among the visible additions so that the share of the final picture already in
place rises evenly from the first addition to the whole (``pick_steps``, the same choice as for footage),
each step completing at least ``min_progress_step`` more. Only the chosen steps are rendered at cell
size; the last step is the whole document.

A background that fills the canvas is the ground of every step (``find_ground``). When whole elements
give too few steps, stroke-only elements are drawn along their length in pieces (``allot_pieces``,
:meth:`SvgDrawing.split`) and the steps are chosen again among the pieces; if that is still too few,
filled shapes are traced: outlined in their own colour, then filled (``allot_traces``,
:meth:`SvgDrawing.trace`). The report notes either.
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
from pipeline.footage.gates import Gate
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


def share(mask: np.ndarray) -> float:
    """The fraction of ``mask`` that is set (the same value as ``mask.mean()``, several times cheaper)."""
    return np.count_nonzero(mask) / mask.size


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


def plan_steps(
    drawing: SvgDrawing, n: int, cfg: VectorConfig, clock: _Clock, ground: int = 0
) -> tuple[list[Step], int]:
    """The N steps (and the number of visible additions); raises Reject when the drawing cannot give N.

    ``ground``: the first units are the ground every step is drawn on, shown in all of them.
    """
    cuts = [ground + k for k in cut_points(len(drawing.units) - ground, cfg.max_prefixes)]
    tol = cfg.pixel_tolerance * 255
    prev = np.full((cfg.analysis_size, cfg.analysis_size, 3), 255, np.uint8)
    if ground:
        prev = render(drawing.document(ground, cfg.analysis_size), drawing.text)
    start = prev
    images, added = [], []
    for k in cuts:
        clock.check()
        img = render(drawing.document(k, cfg.analysis_size), drawing.text)
        added.append(share(changed(img, prev, tol)))
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
    ever = np.logical_or.reduce(differs + [changed(start, final, tol)])
    total = max(np.count_nonzero(ever), 1)
    progress = [1.0 - np.count_nonzero(d) / total for d in differs]
    chosen = pick_steps(progress, n, cfg.min_progress_step)
    if chosen is None:
        raise Reject(
            f"not enough distinct steps: {len(visible)} visible additions do not give {n} steps that "
            f"each complete at least {cfg.min_progress_step:g} more of the picture"
        )
    steps, last = [], start
    for j in chosen:
        img = images[visible[j]]
        steps.append(Step(cuts[visible[j]], round(progress[j], 4), round(share(changed(img, last, tol)), 4)))
        last = img
    steps[-1].shown = len(drawing.units)  # the last step is the whole document
    return steps, len(visible)


def find_ground(drawing: SvgDrawing, cfg: VectorConfig) -> int:
    """Units of the ground: the first element in paint order when it alone fills the drawing's canvas (a
    background), revealed first and kept in every step; 0 when there is none."""
    if not drawing.parts[0].style.filled:
        return 0  # a line or nothing: no background
    order = list(drawing.units)
    count = drawing.to_front(0)
    img = render(drawing.document(count, cfg.analysis_size), drawing.text)
    covered = share(changed(img, np.full_like(img, 255), cfg.pixel_tolerance * 255))
    canvas = drawing.width * drawing.height / max(drawing.width, drawing.height) ** 2
    if count < len(order) and covered >= cfg.ground_coverage * canvas:
        return count
    drawing.units = order
    return 0


def allot_pieces(drawing: SvgDrawing, n: int, cfg: VectorConfig, ground: int) -> dict[int, int]:
    """How many pieces each stroke-only part is drawn in: about ``split_pieces`` x N units in all, shared
    by stroke length (the stroke's share of the line work); empty when nothing can be split."""
    parts = list(dict.fromkeys(u.part for u in drawing.units[ground:]))
    lengths = {k: sum(found) for k in parts if (found := drawing.lengths(k))}
    if not lengths:
        return {}
    budget = max(cfg.split_pieces * n - (len(parts) - len(lengths)), len(lengths))
    total = sum(lengths.values())
    return {k: max(1, round(budget * v / total)) for k, v in lengths.items()}


def allot_traces(drawing: SvgDrawing, n: int, cfg: VectorConfig, ground: int) -> dict[int, int]:
    """How many pieces each filled shape's outline is traced in: about ``split_pieces`` x N in all, shared
    by outline length; empty when no shape can be traced."""
    parts = dict.fromkeys(u.part for u in drawing.units[ground:])
    lengths = {k: sum(found) for k in parts if (found := drawing.outline_lengths(k))}
    total = sum(lengths.values())
    return {k: max(1, round(cfg.split_pieces * n * v / total)) for k, v in lengths.items()}


def redraw(
    drawing: SvgDrawing, n: int, cfg: VectorConfig, clock: _Clock, ground: int, whole: Reject
) -> tuple[list[Step], int, str]:
    """Whole elements gave no N steps: the stroked lines are drawn along their length, and if that is not
    enough either, the filled shapes are traced (outlined in their colour, then filled), as an artist draws.
    Returns the steps, the visible additions and the report's note; raises Reject when neither gives N."""
    tried, reason = [], whole.reason
    ways = (  # (how many pieces, draw them so, the note, the rejection's words), in this order
        (
            allot_pieces,
            drawing.split,
            "splitting strokes: {} stroked elements drawn along their length in {} pieces",
            "{} strokes drawn along their length",
        ),
        (
            allot_traces,
            drawing.trace,
            "tracing shapes: {} filled shapes outlined in their colour in {} pieces, then filled",
            "{} shapes outlined before they are filled",
        ),
    )
    for allot, apply, made, also in ways:
        pieces = allot(drawing, n, cfg, ground)
        if not pieces:
            continue
        count = apply(pieces)
        tried.append(also.format(count))
        try:
            steps, visible = plan_steps(drawing, n, cfg, clock, ground)
        except Reject as r:
            reason = r.reason
            continue
        note = made.format(count, sum(pieces.values()))
        return steps, visible, f"steps made by {note} (whole elements: {whole.reason})"
    if not tried:
        raise whole
    raise Reject(f"{reason} (also with {' and '.join(tried)})")


def _time(drawing: SvgDrawing, times: list[float | None], shown: int) -> float | None:
    """When the stroke the step ends on was finished (timed strokes), None for a stroke still in progress."""
    if not times:
        return None
    part, complete = drawing.piece_of(shown - 1)
    return times[part] if complete else None


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
            drawing = SvgDrawing(data, cfg, skip=cfg.skip + src.svg_skip, order=src.svg_order)
        ground = find_ground(drawing, cfg)
        try:
            if len(drawing.units) - ground < n:  # cannot give N whole: no need to measure it
                raise Reject(
                    f"too few visible additions: {len(drawing.units) - ground} elements in all, "
                    f"a {n}-step sequence needs {n}"
                )
            steps, visible = plan_steps(drawing, n, cfg, clock, ground)
        except Reject as whole:
            steps, visible, note = redraw(drawing, n, cfg, clock, ground, whole)
            work.notes.append(note)
        side = work.source.task.layout.content
        frames = []
        for s in steps:
            clock.check()
            frames.append(
                Frame(
                    source_frame=s.shown,
                    time=_time(drawing, times, s.shown),
                    image=render(drawing.document(s.shown, side), drawing.text),
                    scores={"progress": s.progress, "added": s.added},
                )
            )
        if ground:
            work.notes.append("the first element fills the canvas: drawn as the ground of every step")
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
        gates = [Gate("visible_additions", visible, n).record()]  # plan_steps rejects fewer
        work.sequences = [
            Sequence(
                frames=frames,
                segment_scores={"elements": len(drawing.units), "visible_additions": visible, "gates": gates},
            )
        ]
        return work
