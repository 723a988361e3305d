"""Geometric registration of frames: ORB features matched between two views, a similarity transform
(zoom, pan, roll) fitted with RANSAC.

A similarity is what re-framing between shots, a handheld phone and screen-recording zooms do to a flat
work; it needs far fewer inliers than a homography, so it holds on a half-finished piece where few
features match. All matrices are 3x3 and map analysis-frame pixels of one view onto another's.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

WIDTH = 256  # registration runs on grey images this wide
AREA_WIDTH = 128  # ... and area matching (ECC) on grey images this wide
AREA_MIN_RHO = 0.95  # ECC's correlation coefficient for two views to show the same scene
AREA_COARSE_WIDTH, AREA_COARSE_ITERATIONS = 48, 30  # where each start zoom of area matching is tried first
_ORB = None


@dataclass(frozen=True)
class Features:
    points: np.ndarray  # (n, 2) in analysis-frame pixels
    descriptors: np.ndarray | None
    scale: float  # analysis pixels per registration pixel


def features(img: np.ndarray) -> Features:
    """ORB keypoints of one analysis frame."""
    global _ORB
    if _ORB is None:
        _ORB = cv2.ORB_create(nfeatures=500, fastThreshold=10)
    h, w = img.shape[:2]
    s = w / WIDTH
    grey = cv2.cvtColor(
        cv2.resize(img, (WIDTH, max(8, round(h / s))), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY
    )
    kp, des = _ORB.detectAndCompute(grey, None)
    pts = np.float32([k.pt for k in kp]).reshape(-1, 2) * s
    return Features(pts, des, s)


def register(
    a: Features, b: Features, min_inliers: int = 15, min_ratio: float = 0.3, max_zoom: float = 2.5
) -> np.ndarray | None:
    """3x3 similarity mapping view ``a`` onto view ``b``, or None when they do not show the same scene."""
    if (
        a.descriptors is None
        or b.descriptors is None
        or len(a.points) < min_inliers
        or len(b.points) < min_inliers
    ):
        return None
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(a.descriptors, b.descriptors, k=2)
    good = [m[0] for m in pairs if len(m) == 2 and m[0].distance < 0.8 * m[1].distance]
    if len(good) < min_inliers:
        return None
    src = a.points[[m.queryIdx for m in good]]
    dst = b.points[[m.trainIdx for m in good]]
    m, inliers = cv2.estimateAffinePartial2D(
        src, dst, method=cv2.RANSAC, ransacReprojThreshold=2.0 * a.scale, maxIters=2000, confidence=0.995
    )
    if m is None:
        return None
    n = int(inliers.sum())
    zoom = float(np.hypot(m[0, 0], m[1, 0]))
    if n < min_inliers or n < min_ratio * len(good) or not 1 / max_zoom <= zoom <= max_zoom:
        return None
    # The camera standing still is the simpler answer: take it when it explains nearly as many matches
    # to within a registration pixel (a fit to a few repeated features of a desk drifts by a pixel or two).
    if (np.linalg.norm(src - dst, axis=1) <= a.scale).sum() >= 0.75 * n:
        return np.eye(3)
    return np.vstack([m, [0, 0, 1]]).astype(np.float64)


def _grey(img: np.ndarray, width: int) -> np.ndarray:
    h, w = img.shape[:2]
    size = (width, max(8, round(h * width / w)))
    return cv2.cvtColor(cv2.resize(img, size, interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY).astype(
        np.float32
    )


def _ecc(
    ga: np.ndarray, gb: np.ndarray, start: np.ndarray, iterations: int
) -> tuple[float, np.ndarray] | None:
    """ECC's affine warp (b's pixels -> a's, such that a(warp(x)) ~ b(x)) from ``start``, and the
    correlation it reaches; None when it does not converge."""
    try:
        rho, warp = cv2.findTransformECC(
            gb,
            ga,
            start.astype(np.float32),
            cv2.MOTION_AFFINE,
            (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, iterations, 1e-5),
            None,
            3,
        )
    except cv2.error:
        return None
    return float(rho), warp


def _zoom(warp: np.ndarray) -> float:
    return float(np.sqrt(abs(warp[0, 0] * warp[1, 1] - warp[0, 1] * warp[1, 0])))


def match_areas(
    a: np.ndarray,
    b: np.ndarray,
    zooms: tuple[float, ...] = (1.0, 0.8, 1.25, 0.65, 1.5),
    max_zoom: float = 2.5,
    max_skew: float = 0.03,
) -> np.ndarray | None:
    """3x3 similarity mapping analysis frame ``a`` onto ``b`` by matching their grey levels (ECC), for
    views with too few features to match (an untouched board on a plain desk); None when no start zoom
    converges to a near-similarity under which the two correlate by ``AREA_MIN_RHO``.

    ECC fits an affine map; re-framing a flat work is a similarity, so a fit that shears or stretches
    one axis more than the other (``max_skew``) aligned unrelated structure and is refused. Each start
    zoom is first run on tiny images (``AREA_COARSE_WIDTH``): between unrelated views ECC wanders off
    to a zoom far outside ``max_zoom`` (into some flat patch) within a few iterations, and costs no more;
    only the distinct places where it settled at a plausible zoom are refined at ``AREA_WIDTH``."""
    ca, cb = _grey(a, AREA_COARSE_WIDTH), _grey(b, AREA_COARSE_WIDTH)
    ch, cw = cb.shape
    settled = []
    for z in zooms:
        start = np.array([[z, 0, (1 - z) * cw / 2], [0, z, (1 - z) * ch / 2]], np.float32)
        fit = _ecc(ca, cb, start, AREA_COARSE_ITERATIONS)
        if fit is not None and 1 / max_zoom <= _zoom(fit[1]) <= max_zoom:
            settled.append(fit)
    if not settled:
        return None
    ga, gb = _grey(a, AREA_WIDTH), _grey(b, AREA_WIDTH)
    up = np.diag([1.0, 1.0, AREA_WIDTH / AREA_COARSE_WIDTH])  # coarse warp -> fine warp: translation scales
    refined: list[np.ndarray] = []
    for _, coarse in sorted(settled, key=lambda fit: -fit[0]):
        start = (coarse @ up).astype(np.float32)
        if any(
            np.abs(start[:, :2] - r[:, :2]).max() < 0.01 and np.abs(start[:, 2] - r[:, 2]).max() < 1
            for r in refined
        ):
            continue  # settled where another start did (within a pixel): refining it again finds the same
        refined.append(start)
        fit = _ecc(ga, gb, start, 100)
        if fit is None:
            continue
        rho, ((p, q, _), (r, t, _)) = fit
        zoom = _zoom(fit[1])
        if (
            rho >= AREA_MIN_RHO
            and 1 / max_zoom <= zoom <= max_zoom
            and max(abs(p - t), abs(q + r)) <= max_skew * zoom
        ):
            s = a.shape[1] / AREA_WIDTH
            scale = np.diag([s, s, 1.0])
            return np.linalg.inv(
                scale @ np.vstack([fit[1], [0, 0, 1]]).astype(np.float64) @ np.linalg.inv(scale)
            )
    return None


def beats_standing_still(a: np.ndarray, b: np.ndarray, m: np.ndarray) -> bool:
    """Whether ``m`` (analysis frame ``a``'s pixels onto ``b``'s) matches ``b``'s grey levels more
    closely than standing still does, over the pixels both see.

    Between two states of a work on a fixed camera, the few features left to match mix the desk's with
    look-alike features of the changed work, and a fit to them zooms and turns by a degree; the desk's
    texture then says the camera did not move. A camera that did move lines up only under its fit."""
    s = a.shape[1] / WIDTH
    ga, gb = (_grey(x, WIDTH) for x in (a, b))
    to_small = np.diag([1 / s, 1 / s, 1.0])
    moved = (to_small @ m @ np.linalg.inv(to_small))[:2].astype(np.float32)
    size = (ga.shape[1], ga.shape[0])
    warped = cv2.warpAffine(ga, moved, size, flags=cv2.INTER_LINEAR, borderValue=-1)
    both = warped >= 0
    return bool(np.abs(warped - gb)[both].mean() < np.abs(ga - gb)[both].mean())


def distinct(a: Features, b: Features, min_points: int = 40) -> bool:
    """Whether two views that did not register show different scenes, rather than too little to tell
    (a blank canvas, a flat desk): both have plenty of features."""
    return len(a.points) >= min_points and len(b.points) >= min_points


def is_identity(m: np.ndarray, size: tuple[int, int], tol_px: float = 1.0) -> bool:
    """True when ``m`` moves no corner of a (w, h) frame by more than ``tol_px`` pixels."""
    w, h = size
    corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], np.float64)
    return bool(np.abs(corners @ m.T - corners)[:, :2].max() <= tol_px)
