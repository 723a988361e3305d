"""Quality: inside each process segment drop blurred frames, frames where something transient covers
the work (a hand, a brush, an arm), cross-fade frames (a blend of two steps), and frames that show
only part of the work (zoomed in on a detail). Judged on aligned, normalised views (pipeline.footage)."""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.config import QualityConfig
from pipeline.footage.transitions import (
    SURE_FADE,
    aligned_blends,
    fade_only,
    fade_score,
    ghosted,
    reframed,
    transient_fraction,
    unsettled,
)
from pipeline.stages.process import work_box
from pipeline.work import Frame, Segment, Work

TRANSIENT_TOL = 0.12


def sharpness(img: np.ndarray) -> float:
    """Variance of the Laplacian: low when the frame is blurred. (The Laplacian of 8-bit grey is a small
    integer, exact in float32, and OpenCV's mean and deviation sum in double: numpy's variance of a
    float64 Laplacian to the last digits, at a fraction of the cost.)"""
    _, dev = cv2.meanStdDev(cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.CV_32F))
    return float(dev[0, 0]) ** 2


def _times(frames: list[Frame]) -> np.ndarray:
    """The work's clock: frame times with the time spent away from the work (a talking-head insert
    between two linked shots) taken out, so a hand is judged against the work just before and after it.
    Frame positions where there are no times (image folders)."""
    if any(f.time is None for f in frames) or len(frames) < 3:
        return np.arange(len(frames), dtype=float)
    dt = np.diff([f.time for f in frames])
    return np.concatenate([[0.0], np.cumsum(np.minimum(dt, 2 * np.median(dt)))])


def _sides(values: np.ndarray, t: np.ndarray, window: float) -> np.ndarray:
    """Per frame, the lower of the medians of the frames before it and after it within ``window`` / 2
    (itself included on both sides): what the frame must fall well below on both sides to be a dip."""
    before = [np.median(values[(t >= ti - window / 2) & (t <= ti)]) for ti in t]
    after = [np.median(values[(t >= ti) & (t <= ti + window / 2)]) for ti in t]
    return np.minimum(before, after)


def _box(seg: Segment) -> np.ndarray | None:
    """What the grid will show (the crop box, else the work's box) as a mask: what covers the work
    matters, not what crosses the desk around it."""
    region = seg.region
    if region is None or not region.any():
        return None
    x0, y0, x1, y1 = seg.scores.get("crop") or work_box(region, 0.0)
    h, w = region.shape
    mask = np.zeros_like(region)
    mask[int(y0 * h) : int(np.ceil(y1 * h)), int(x0 * w) : int(np.ceil(x1 * w))] = True
    return mask


class Quality:
    name = "quality"

    def __init__(self, cfg: QualityConfig, pixel_tolerance: float, noise: float) -> None:
        self.cfg = cfg
        self.tol = pixel_tolerance
        self.noise = (
            noise  # progress.noise: the change noise explains, below which a pixel says nothing about a mix
        )

    def __call__(self, work: Work) -> Work:
        group_of = {i: g for g, group in enumerate(work.groups) for i in group.indices()}
        for seg in work.segments:
            if work.source.kind == "images" and len(seg.frames) <= work.source.task.frames:
                continue  # a curated step set with no spare frames is taken as given
            seg.frames = self._filter(seg, work, group_of)
        return work

    def _filter(self, seg: Segment, work: Work, group_of: dict[int, int]) -> list[Frame]:
        frames = seg.frames
        t = _times(frames)
        sharp = np.array([sharpness(f.image) for f in frames])
        # Sharpness changes with the work (a sharp sketch under a blurred colour block-in, finer strokes
        # later) and with a shot's zoom: those changes last. A blurred frame (a camera in motion, a lens
        # hunting) is a dip below the frames on both sides of it.
        local = _sides(sharp, t, self.cfg.occlusion_window)
        views = np.stack([f.view for f in frames])
        video = work.source.kind == "video"
        occ = (
            transient_fraction(views, t, self.cfg.occlusion_window, TRANSIENT_TOL, _box(seg))
            if video
            else np.zeros(len(frames))
        )
        # A fade spans a few analysis frames: judge each against its neighbours and the frames beyond them,
        # aligned (a fade within one framing), and as filmed where its framing differs from theirs or it
        # sits next to a cut (a fade between two framings, or out of a talking head, mixes two views); and
        # look for a ghost of the neighbouring frame's framing (the faint part of a fade between two
        # framings).
        blend = np.zeros(len(frames))
        ghost = fading = np.zeros(len(frames), dtype=bool)
        if video:
            position = {id(f): k for k, f in enumerate(work.frames)}
            at = [position[id(f)] for f in frames]
            # Above noise: fades between refinement stills are faint.
            blend = aligned_blends(views, self.noise)
            for i, k in enumerate(at):
                # Its neighbours in the segment: are they its neighbours in the video?
                near = at[max(0, i - 2) : i + 3]
                cut = any(b - a != 1 for a, b in zip(near, near[1:]))
                if cut or reframed(work, k, [j for j in near if j != k]):
                    blend[i] = max(blend[i], fade_score(work, k, self.tol))
            ghost = np.array([ghosted(work, k, self.tol, group_of) for k in at], dtype=bool)
            # Sure fades: judged as filmed (align judged every frame where registration broke or a shot
            # ends), or aligned here; frames with a ghost; fade frames that align left on their own.
            sure = {j for j, score in work.fades.items() if score > SURE_FADE}
            sure |= {at[i] for i in np.flatnonzero((blend > SURE_FADE) | ghost)}
            sure |= {i for group in work.groups if fade_only(work, group) for i in group.indices()}
            fading = np.array([unsettled(work, k, self.tol, sure) for k in at], dtype=bool)
        kept: list[Frame] = []
        for f, s, m, o, b, g, end in zip(frames, sharp, local, occ, blend, ghost, fading):
            f.scores.update(
                sharpness=round(float(s), 2), occlusion=round(float(o), 4), blend=round(float(b), 4)
            )
            if s < self.cfg.blur_ratio * m:
                work.drops["blurred"] += 1
            elif f.scores.get("visible", 1.0) < self.cfg.min_visible:
                work.drops["only part of the work in view"] += 1
            elif b > self.cfg.blend_share or g:
                work.drops["cross-fade between two steps"] += 1
            elif end:
                work.drops["end of a cross-fade, not yet settled"] += 1
            elif o > self.cfg.occlusion_max:
                work.drops["occluded by a transient object"] += 1
            else:
                kept.append(f)
        return kept
