"""Small views of frames in their group's reference coordinates, photometrically normalised.

Everything that compares frames (completion, occlusion, cross-fades, distinct steps) works on these, so
that jitter, zooms, pans, re-framed cuts and exposure or white-balance drift do not read as change.
Pixels a frame does not see are NaN; every comparison ignores them.
"""
from __future__ import annotations

import cv2
import numpy as np

from pipeline.work import Frame

THUMB = 96  # wide enough to see a pencil line, small enough to be cheap
DARK = 0.04  # pixels darker than this say nothing about gain


def thumb(img: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """Small float RGB in [0, 1]; noise- and compression-tolerant. ``size``: (w, h), default THUMB wide."""
    h, w = img.shape[:2]
    size = size or (THUMB, max(2, round(h * THUMB / w)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA).astype(np.float32) / 255


def view(frame: Frame, ref_size: tuple[int, int]) -> np.ndarray:
    """The frame's thumbnail warped into the reference view (w, h); NaN where the frame does not see."""
    rw, rh = ref_size
    tw, th = THUMB, max(2, round(rh * THUMB / rw))
    if frame.warp is None or np.allclose(frame.warp, np.eye(3)):
        return thumb(frame.image, (tw, th))
    fh, fw = frame.image.shape[:2]
    small = thumb(frame.image)
    sh, sw = small.shape[:2]
    to_small = np.diag([sw / fw, sh / fh, 1.0])
    to_thumb = np.diag([tw / rw, th / rh, 1.0])
    m = (to_thumb @ frame.warp @ np.linalg.inv(to_small))[:2].astype(np.float32)
    out = cv2.warpAffine(small, m, (tw, th), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(-1, -1, -1))
    seen = cv2.warpAffine(np.ones((sh, sw), np.float32), m, (tw, th), flags=cv2.INTER_LINEAR, borderValue=0)
    out[seen < 0.999] = np.nan
    return out


def chain_gains(views: np.ndarray) -> np.ndarray:
    """Per-view RGB gains that bring every view to the photometry of the last one.

    Consecutive views differ in a small part only (the work advances, a hand passes), so the median
    ratio between them is the exposure and white-balance change; the product of those ratios from a
    view to the end maps it onto the last view. (n, 3).
    """
    n = len(views)
    step = np.ones((n, 3))
    for t in range(n - 1):
        a, b = views[t], views[t + 1]
        ok = np.isfinite(a).all(-1) & np.isfinite(b).all(-1) & (a.min(-1) > DARK) & (b.min(-1) > DARK)
        if ok.sum() >= 0.1 * ok.size:
            step[t] = np.clip(np.median(b[ok] / a[ok], axis=0), 0.5, 2.0)
    return np.cumprod(step[::-1], axis=0)[::-1]


def normalised_views(frames: list[Frame], ref_size: tuple[int, int], photometric: bool = True) -> np.ndarray:
    views = np.stack([view(f, ref_size) for f in frames])
    if photometric and len(views) > 1:
        views *= chain_gains(views)[:, None, None, :].astype(np.float32)
    return views


def differs(a: np.ndarray, b: np.ndarray, tol: float, shift: int = 1) -> np.ndarray:
    """Pixels where ``a`` differs by more than ``tol`` in some channel from every pixel of ``b`` within
    ``shift`` pixels (False where either is off view).

    The shift tolerance absorbs what a 2-D registration leaves: parallax of a 3-D scene, sub-pixel
    jitter, resampling. Work that arrives (a stroke, a piece) is larger than a thumbnail pixel and still
    differs; a handheld view of a static scene no longer reads as change.
    """
    h, w = b.shape[-3], b.shape[-2]
    pad = [(0, 0)] * (b.ndim - 3) + [(shift, shift), (shift, shift), (0, 0)]
    padded = np.pad(b, pad, constant_values=np.nan)
    best = None
    with np.errstate(invalid="ignore"):
        for dy in range(2 * shift + 1):
            for dx in range(2 * shift + 1):
                d = np.abs(a - padded[..., dy:dy + h, dx:dx + w, :]).max(axis=-1)
                best = d if best is None else np.fmin(best, d)
        return best > tol


def seen(v: np.ndarray) -> np.ndarray:
    return np.isfinite(v).all(axis=-1)
