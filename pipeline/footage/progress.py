"""How far along the way from the start state to the final state a frame is: a continuous, multi-scale
measure on the aligned, normalised views (pipeline.footage.views).

A binary per-pixel match with the final state ("completion") sees a picture revealed region by region,
but not one laid in everywhere and then refined: sketch, blurred colour blocks, finer and finer strokes,
or line art, flat colours, shading, detail. Every pixel then moves toward its final value in several
small steps, and matches it only at the last pass. Here each pixel's position is measured instead: its
projection onto the way from the start to the final state (0 at the start, 1 at the end, clipped),
weighted by how far that way is, on a pyramid of the views (coarse levels see the block-in, fine levels
the detail), plus the same on the grey gradients (a structure term: line art and detail passes change
edges more than colours). Each *component* (a level, or the structure at a level) says which share of
its whole change a frame has made; the progress of a frame is their mean.

Steps are told apart by the component that sees their difference: two states are distinct when some
component moved by a share of the whole process's change (pipeline.stages.select).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.footage.views import nan_median

STRUCTURE_LEVELS = 2  # edges at the two finest levels only: coarser ones repeat the colour bands


@dataclass
class Progress:
    """Per frame and component (pyramid levels fine to coarse, then the structure levels): the share of
    the component's whole change (start to final state) the frame has made, in [0, 1]."""

    components: np.ndarray  # (frames, components)
    names: tuple[str, ...]  # "colour/96", "structure/48", ... (views' width at that level)

    @property
    def curve(self) -> np.ndarray:
        """Each frame's progress: the mean over components."""
        return self.components.mean(axis=1)


def _halve(x: np.ndarray) -> np.ndarray:
    """Area-average (n, h, w, c) by two (an odd last row or column is dropped). Four strided views added:
    numpy's reduction over the short axes of a reshape is several times slower."""
    h, w = x.shape[1] // 2 * 2, x.shape[2] // 2 * 2
    return (x[:, 0:h:2, 0:w:2] + x[:, 1:h:2, 0:w:2] + x[:, 0:h:2, 1:w:2] + x[:, 1:h:2, 1:w:2]) * 0.25


def _up(x: np.ndarray, h: int, w: int) -> np.ndarray:
    """(n, h/2, w/2, c) doubled by bilinear interpolation to (n, h, w, c); an odd last row or column
    repeats the one before it. One frame at a time: stacked, the frames would blend at their borders."""
    out = np.empty((len(x), h, w, x.shape[-1]), np.float32)
    size = (2 * x.shape[2], 2 * x.shape[1])
    for frame, small in zip(out, x):
        frame[: size[1], : size[0]] = cv2.resize(small, size, interpolation=cv2.INTER_LINEAR).reshape(
            size[1], size[0], -1
        )
    out[:, size[1] :] = out[:, size[1] - 1 : size[1]]
    out[:, :, size[0] :] = out[:, :, size[0] - 1 : size[0]]
    return out


def _gradients(x: np.ndarray) -> np.ndarray:
    """(n, h, w, 3) colour -> (n, h, w, 2) central differences of its grey (zero at the border)."""
    grey = (x[..., 0] + x[..., 1] + x[..., 2]) / 3  # numpy's mean over a last axis of 3 is slow
    g = np.zeros(grey.shape + (2,), np.float32)
    g[:, :, 1:-1, 0] = (grey[:, :, 2:] - grey[:, :, :-2]) / 2
    g[:, 1:-1, :, 1] = (grey[:, 2:] - grey[:, :-2]) / 2
    return g


def _along(moved: np.ndarray, way: np.ndarray, seen: np.ndarray, noise: float) -> np.ndarray:
    """(n,) share of its way each frame has gone: per pixel, the clipped projection of what moved since the
    start (n, h, w, c; zero where a frame does not see) onto the way from the start to the final state
    (h, w, c), weighted by the way's length above noise, over the pixels each frame sees (``seen``: (n, h*w)
    as 0/1). Over all pixels (a pixel with no way weighs nothing): gathering the weighed ones costs more."""
    length2 = np.einsum("hwc,hwc->hw", way, way)
    weight = np.maximum(np.sqrt(length2) - noise, 0.0).astype(np.float32).ravel()
    if not weight.any():
        return np.zeros(len(moved))
    unit = (way / np.maximum(length2, 1e-12)[..., None]).astype(np.float32)
    t = np.einsum("nhwc,hwc->nhw", moved, unit).reshape(len(moved), -1)
    np.clip(t, 0.0, 1.0, out=t)
    t *= seen  # an edge or a band reaches into pixels a frame does not see
    return t @ weight / np.maximum(seen @ weight, 1e-9)


def ends(n: int) -> int:
    """How many frames at each end of a group make its start and final states (medians: a hand that
    passes there does not become part of either)."""
    return max(1, min(5, n // 5))


def measure(views: np.ndarray, noise: float, coarsest: int) -> Progress:
    """The progress of every view (n, h, w, 3; NaN off view) between the start state (median of the first
    few) and the final state (median of the last few). ``noise``: the per-pixel change noise explains;
    ``coarsest``: the pyramid stops at this many pixels across (config ``progress``).

    The pyramid is one of changes: what moved since the start, and the whole way, split into bands (a
    Laplacian pyramid: each level less its smoothed next level), so that a blurred block-in moves the
    coarse bands and leaves the fine ones for the detail that comes later. Both are linear, so a band's
    projection is the projection of that band of the picture."""
    k = ends(len(views))
    start, final = nan_median(views[:k]), nan_median(views[-k:])
    visible = np.isfinite(views[..., 0])
    moved = np.nan_to_num(views - start, nan=0.0).astype(np.float32)  # unseen, now or at the start: no move
    way = np.nan_to_num(final - start, nan=0.0)[None].astype(np.float32)
    seen = visible.astype(np.float32)
    columns, names, level = [], [], 0
    while True:
        h, w = moved.shape[1:3]
        flat = seen.reshape(len(seen), -1)
        if level < STRUCTURE_LEVELS:  # edges: line art and detail passes
            columns.append(_along(_gradients(moved), _gradients(way)[0], flat, noise))
            names.append(f"structure/{w}")
        if min(h, w) < 4 or w // 2 < coarsest:  # the rest: colour blocks, overall tone
            columns.append(_along(moved, way[0], flat, noise))
            names.append(f"base/{w}")
            break
        small_moved, small_way = _halve(moved), _halve(way)
        columns.append(_along(moved - _up(small_moved, h, w), (way - _up(small_way, h, w))[0], flat, noise))
        names.append(f"band/{w}")
        moved, way = small_moved, small_way
        seen = (_halve(seen[..., None])[..., 0] > 0.5).astype(np.float32)
        level += 1
    return Progress(components=np.stack(columns, axis=1), names=tuple(names))
