"""Stroke data (QuickDraw-style ndjson): one drawing a line, ``"drawing": [[xs], [ys](, [ts])]`` per stroke.

A drawing becomes an SVG of round-capped black paths, fitted and centred in a square with a margin and a
line width proportional to the cell, so the same progressive renderer draws it. Strokes are the units,
in drawing order; where times are given (the raw variant, ms), strokes are ordered by when they start
and cut where the drawing time crosses each 1/(2N) of the whole, so a long stroke can span steps.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from pipeline.config import VectorConfig
from pipeline.work import Reject

Point = tuple[float, float, float | None]


@dataclass
class StrokeDrawing:
    """One parsed drawing: its SVG document, the end time (s) of each unit (None without times), its word."""

    svg: bytes
    times: list[float | None]
    word: str | None
    duration: float | None


def _strokes(drawing: object) -> list[list[Point]]:
    if not isinstance(drawing, list) or not drawing:
        raise Reject("broken drawing: `drawing` must be a non-empty list of strokes")
    out = []
    for i, stroke in enumerate(drawing):
        if not (
            isinstance(stroke, list) and len(stroke) in (2, 3) and all(isinstance(c, list) for c in stroke)
        ):
            raise Reject(f"broken drawing: stroke {i} is not [[xs], [ys]] or [[xs], [ys], [ts]]")
        if len({len(c) for c in stroke}) != 1 or not stroke[0]:
            raise Reject(f"broken drawing: stroke {i} has lists of different or zero length")
        try:
            cols = [[float(v) for v in c] for c in stroke]
        except (TypeError, ValueError):
            raise Reject(f"broken drawing: stroke {i} holds a value that is not a number") from None
        if not all(math.isfinite(v) for c in cols for v in c):
            raise Reject(f"broken drawing: stroke {i} holds a non-finite number")
        ts = cols[2] if len(cols) == 3 else [None] * len(cols[0])
        out.append(list(zip(cols[0], cols[1], ts)))
    return out


def _cut_by_time(strokes: list[list[Point]], slices: int) -> list[list[Point]]:
    """Strokes ordered by start time, each cut where the drawing time crosses a slice boundary."""
    t0 = min(p[2] for s in strokes for p in s)
    span = max(p[2] for s in strokes for p in s) - t0
    if span <= 0:
        return strokes
    edge = span / slices
    pieces = []
    for stroke in sorted(strokes, key=lambda s: s[0][2]):
        piece = [stroke[0]]
        for prev, p in zip(stroke, stroke[1:]):
            piece.append(p)
            if int((p[2] - t0) / edge) > int((prev[2] - t0) / edge) and p is not stroke[-1]:
                pieces.append(piece)
                piece = [p]
        pieces.append(piece)
    return pieces


def parse_drawing(line: bytes, steps: int, cfg: VectorConfig) -> StrokeDrawing:
    """One ndjson line -> a drawing; raises Reject naming what is wrong with the line."""
    try:
        rec = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise Reject(f"broken ndjson line: {e}") from None
    if not isinstance(rec, dict) or "drawing" not in rec:
        raise Reject("broken ndjson line: not an object with a `drawing` field")
    strokes = _strokes(rec["drawing"])
    timed = all(p[2] is not None for s in strokes for p in s)
    if timed:
        strokes = _cut_by_time(strokes, 2 * steps)
    xs = [p[0] for s in strokes for p in s]
    ys = [p[1] for s in strokes for p in s]
    extent = max(max(xs) - min(xs), max(ys) - min(ys), 1e-6)
    side = extent / (1 - 2 * cfg.stroke_margin)
    x0 = (min(xs) + max(xs)) / 2 - side / 2
    y0 = (min(ys) + max(ys)) / 2 - side / 2
    paths = "".join(
        '<path d="M'
        + " L".join(f"{p[0] - x0:.2f} {p[1] - y0:.2f}" for p in (s if len(s) > 1 else s * 2))
        + '"/>'
        for s in strokes
    )
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {side:.2f} {side:.2f}" fill="none" '
        f'stroke="#000" stroke-width="{cfg.stroke_width * side:.3f}" stroke-linecap="round" '
        f'stroke-linejoin="round">{paths}</svg>'
    )
    word = rec.get("word") if isinstance(rec.get("word"), str) and rec["word"].strip() else None
    if not timed:
        return StrokeDrawing(svg.encode(), [None] * len(strokes), word, None)
    t0 = min(p[2] for s in strokes for p in s)
    times = [round((s[-1][2] - t0) / 1000, 3) for s in strokes]
    return StrokeDrawing(svg.encode(), times, word, max(times))
