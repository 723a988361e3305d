"""Transitions between states: cross-fades (a blend of two steps is never a step) and transient objects
(a hand passing over the work), both judged on aligned, normalised views."""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.footage.register import is_identity
from pipeline.footage.views import differs, envelope, nan_median, outside, seen, thumb, thumb_size
from pipeline.work import Group, Work

FADE = 0.5  # a frame is part of a cross-fade when more of its change than this is one common mix
SURE_FADE = 0.8  # ... and surely so (a camera that moves smoothly seldom looks like this)
RESIDUAL_MAX = 0.03  # of a pixel's change between the neighbours, what one mix may leave unexplained
MIN_CHANGE = 0.02  # a fade changes at least this fraction of the view (a brush stroke changes less)
UNEXPLAINED = 0.05  # ... and this share of that change is beyond what a shift within a pixel explains
GHOST_SHIFT = 3.0  # thumbnail pixels two framings must differ by for a ghost of one in the other to show
GHOST = 0.1  # ... and the share of the other framing that shows a frame holds a ghost of it


def blend_share(prev: np.ndarray, cur: np.ndarray, nxt: np.ndarray, change: float) -> float:
    """Of the pixels that change between a frame's neighbours (by more than ``change`` in some channel), the
    share that sit part-way between them by one common amount (0 when that amount is ~0 or ~1, or when
    a shift within a pixel explains nearly all of that change).

    A cross-fade mixes two whole states in one proportion, so every changing pixel is the same part of the
    way between them; real work changes a pixel at once (paint arrives, a piece is placed), so most equal
    one neighbour or the other and the few part-way (the edge of a stroke) are part-way by any amount.
    Exposure and white balance that drift or flicker also move every pixel part-way by one amount, and
    what is mixed then is one state under two lights: only pixels whose change no tone curve explains
    (``toned``: the neighbours' values mapped onto each other, clipped highlights included) count.
    A camera that shakes by part of a pixel also puts every edge part-way between its neighbours (an
    image moved by a third of a pixel is two thirds of it plus a third of the next pixel), as filmed and
    in aligned views alike (each is resampled at its own sub-pixel phase). A fade leaves part of its
    change beyond what the other neighbour shows within a pixel (``UNEXPLAINED``); shake leaves next to
    none. A new line a pixel wide leaves its old neighbourhood though not the other way round, so one
    way suffices. (Tested last: most frames are no mix at all, and this test costs the most.)
    """
    enough = max(8, MIN_CHANGE * seen(cur).sum())
    moved = differs(prev, nxt, change, shift=0) & seen(cur)
    if moved.sum() < enough:  # too little change for a fade under any light: no tone curve needed
        return 0.0
    changing = moved & differs(toned(prev, nxt), nxt, change, shift=0)
    if changing.sum() < enough:
        return 0.0
    d = (nxt - prev)[changing]
    alpha = ((cur - prev)[changing] * d).sum(-1) / (d * d).sum(-1)
    mix = float(np.median(alpha))
    if not 0.1 < mix < 0.9:
        return 0.0
    # One proportion must explain the frame: what a single mix leaves unexplained stays small for most
    # pixels (a median, so that a hand in a neighbouring frame does not hide the fade).
    residual = float(np.median((((cur - prev)[changing] - mix * d) ** 2).sum(-1) / (d * d).sum(-1)))
    if residual > RESIDUAL_MAX:
        return 0.0
    share = float((np.abs(alpha - mix) < 0.15).mean())
    unexplained = changing & (differs(prev, nxt, change) | differs(nxt, prev, change))
    return share if unexplained.sum() >= UNEXPLAINED * changing.sum() else 0.0


def toned(a: np.ndarray, b: np.ndarray, levels: int = 16) -> np.ndarray:
    """``a`` under ``b``'s light: per channel, each of ``levels`` bands of a's values mapped to the median
    of b's values there (a tone curve: exposure, white balance, gamma and clipping, not content). Where the
    content changed, the curve does not follow it, so those pixels stay unlike ``b``."""
    out = np.full_like(a, np.nan)
    both = np.isfinite(a[..., 0]) & np.isfinite(b[..., 0])
    centres = (np.arange(levels) + 0.5) / levels
    for c in range(a.shape[-1]):
        x, y = a[..., c][both], b[..., c][both]
        band = np.minimum((x * levels).astype(int), levels - 1)
        # b's values sorted, then stably by band: each band's values in order, its median the middle one
        # or the mean of the two middle ones (np.median's values, without a call per band)
        by_value = np.argsort(y)
        order = by_value[np.argsort(band[by_value].astype(np.int16), kind="stable")]
        ys = y[order]
        cuts = np.searchsorted(band[order], np.arange(levels + 1))
        lo, hi = cuts[:-1], cuts[1:]
        known = hi > lo
        if known.any():
            lo, hi = lo[known], hi[known]
            curve = (ys[(lo + hi - 1) // 2] + ys[(lo + hi) // 2]) / ys.dtype.type(2)
            out[..., c][both] = np.interp(x, centres[known], curve.astype(float))
    return out


def aligned_blends(views: np.ndarray, change: float) -> np.ndarray:
    """Per view of a segment (aligned, normalised, in time order), its best blend share between the views
    one and two before and after it: a fade spans a few analysis frames."""
    n = len(views)
    return np.array(
        [
            max(
                (blend_share(views[i - d], views[i], views[i + d], change) for d in (1, 2) if d <= i < n - d),
                default=0.0,
            )
            for i in range(n)
        ]
    )


def _small(work: Work, i: int) -> np.ndarray:
    cache = work.fade_parts
    if ("thumb", i) not in cache:
        cache["thumb", i] = thumb(work.frames[i].image)
    return cache["thumb", i]


def _mixed(work: Work, i: int, pairs: tuple[tuple[int, int], ...], tol: float) -> float:
    """The best blend share of analysis frame ``i`` between the frames ``p`` before and ``q`` after it."""
    n = len(work.frames)
    return max(
        (
            blend_share(_small(work, i - p), _small(work, i), _small(work, i + q), 2 * tol)
            for p, q in pairs
            if i - p >= 0 and i + q < n
        ),
        default=0.0,
    )


def _even(work: Work, i: int, tol: float) -> float:
    cache = work.fade_parts
    if ("even", i) not in cache:
        cache["even", i] = _mixed(work, i, ((1, 1), (2, 2)), tol)
    return cache["even", i]


def fade_score(work: Work, k: int, tol: float) -> float:
    """How surely analysis frame ``k`` of the video is part of a cross-fade, judged as filmed against the
    frames one and two before and after it. Only pairs as far before as after (a smoothly moving camera
    also puts a frame part-way between two unevenly spaced neighbours), except next to a frame that is
    surely a fade: a fade spans a few frames, and its faint ends (a mix of one to nine) are judged also
    between the frame two before and one after them, and one before and two after. Cached in
    ``work.fades``; ``work.fade_parts`` keeps the small frames and scores behind it, so align and quality
    share them."""
    if k in work.fades:
        return work.fades[k]
    score = _even(work, k, tol)
    if score <= FADE and any(
        0 <= j < len(work.frames) and _even(work, j, tol) > SURE_FADE for j in (k - 1, k + 1)
    ):
        score = max(score, _mixed(work, k, ((2, 1), (1, 2)), tol))
    work.fades[k] = score
    return score


def moved_through(work: Work, k: int, before: np.ndarray, after: np.ndarray, tol: float) -> bool:
    """Whether a camera moving through analysis frame ``k`` explains it as filmed: each neighbour, moved
    onto it by the registrations ``before`` (frame k-1 -> k) and ``after`` (k -> k+1), leaves changed
    (beyond a one-pixel shift, under k's light) less of the view than a fade changes at the least
    (``MIN_CHANGE``). A smooth zoom or pan puts each pixel part-way between its neighbours as a mix does;
    a mix of two framings matches neither neighbour however it is moved. Both moves must exceed a
    thumbnail pixel: the fade test allows a pixel's shift, so a smaller move (jitter through the faint
    end of a fade between two framings, whose frames all look alike) is not what made the frame a mix."""
    cur = _small(work, k)
    th, tw = cur.shape[:2]
    h, w = work.frames[k].image.shape[:2]
    to_small = np.diag([tw / w, th / h, 1.0])
    for j, m in ((k - 1, before), (k + 1, np.linalg.inv(after))):
        small = to_small @ m @ np.linalg.inv(to_small)
        if is_identity(small, (tw, th)):
            return False
        warp = small[:2].astype(np.float32)
        moved = cv2.warpAffine(_small(work, j), warp, (tw, th), flags=cv2.INTER_LINEAR)
        inside = cv2.warpAffine(np.ones((th, tw), np.float32), warp, (tw, th), flags=cv2.INTER_LINEAR)
        moved[inside < 0.999] = np.nan
        changed = differs(toned(moved, cur), cur, 2 * tol)
        if changed.sum() >= MIN_CHANGE * seen(moved).sum():
            return False
    return True


def unsettled(work: Work, k: int, tol: float, sure: set[int]) -> bool:
    """Whether analysis frame ``k`` sits right next to a frame that is surely part of a cross-fade (in
    ``sure``) and has not settled: as filmed, it differs from its neighbour on the far side from the fade.

    The faint end of a fade (a mix of one to nine) between two framings that differ little leaves too
    few changing pixels to measure its mix, above all when a hand arrives in the next frame. A frame
    that equals the frame after it (before it, at a fade's start) is past the fade; one that does not
    may still hold a ghost of the other view, and is not taken."""
    n = len(work.frames)
    return any(
        j in sure
        and 0 <= 2 * k - j < n
        and differs(_small(work, k), _small(work, 2 * k - j), tol, shift=0).mean() >= MIN_CHANGE
        for j in (k - 1, k + 1)
    )


def _move(work: Work, k: int, j: int) -> tuple[np.ndarray, tuple[int, int]] | None:
    """Frame ``j``'s thumbnail pixels -> frame ``k``'s, as filmed (both in one group's coordinates), and the
    thumbnails' (w, h); None when neither frame moved (align gives a fixed shot's frames the identity)."""
    fk, fj = work.frames[k], work.frames[j]
    if not fk.moved and not fj.moved:
        return None
    own = lambda f: f.warp if f.warp is not None else np.eye(3)  # noqa: E731
    h, w = fk.image.shape[:2]
    tw, th = thumb_size(h, w)
    to_small = np.diag([tw / w, th / h, 1.0])
    return to_small @ np.linalg.inv(own(fk)) @ own(fj) @ np.linalg.inv(to_small), (tw, th)


def reframed(work: Work, k: int, others: list[int]) -> bool:
    """Whether analysis frame ``k`` is framed differently from any of ``others`` (frames of its group) by
    more than a thumbnail pixel. Where it is not, its thumbnail as filmed shows what its aligned view
    shows, and a fade is judged there: a camera that only shakes needs no judging as filmed."""
    return any((m := _move(work, k, j)) is not None and not is_identity(*m) for j in others)


def ghost_share(work: Work, k: int, j: int, tol: float) -> float | None:
    """How much of frame ``j``'s framing, as filmed, shows through analysis frame ``k`` of the same group:
    g in k = (1 - g) * (j re-framed as k) + g * (j as filmed), a robust fit over the pixels that the
    re-framing changes; None where the two framings differ too little for a ghost to show.

    A cross-fade between two framings of the work mixes them pixel by pixel, so its frames hold a ghost
    of the framing they fade from or to; a frame the camera moved to (jitter, a zoom, a pan) is its
    neighbour re-framed, whatever the work did in between (a hand or new work are outliers of the fit)."""
    found = _move(work, k, j)
    if found is None or is_identity(*found, GHOST_SHIFT):
        return None
    move, (tw, th) = found
    small_k, small_j = _small(work, k), _small(work, j)
    j_as_k = cv2.warpAffine(
        small_j,
        move[:2].astype(np.float32),
        (tw, th),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(np.nan, np.nan, np.nan),
    )
    d = small_j - j_as_k
    with np.errstate(invalid="ignore"):
        changed = np.fmax(np.fmax(np.abs(d[..., 0]), np.abs(d[..., 1])), np.abs(d[..., 2])) > 2 * tol
    if changed.sum() < max(8, MIN_CHANGE * changed.size):
        return None
    d, e = d[changed], (small_k - j_as_k)[changed]
    return float(np.median((e * d).sum(-1) / (d * d).sum(-1)))


def ghosted(work: Work, k: int, tol: float, group_of: dict[int, int]) -> bool:
    """Whether analysis frame ``k`` holds a ghost of a neighbouring frame's different framing (``group_of``:
    analysis frame -> its group; only frames of one group share coordinates). By ``GHOST`` to a half: a
    frame registered to its own framing holds less than half of the other; more says that the two
    frames' registrations disagree, not that they mix."""
    return any(
        group_of.get(j, -1) == group_of.get(k)
        and (g := ghost_share(work, k, j, tol)) is not None
        and GHOST <= g < 0.5
        for j in (k - 1, k + 1)
    )


def fade_only(work: Work, group: Group) -> bool:
    """A group of frames that are all cross-fade (as filmed): the mix of two views registers to neither,
    so align leaves such frames on their own."""
    return all(work.fades.get(i, 0.0) > FADE for i in group.indices())


def _unusual(views: np.ndarray, times: np.ndarray, window: float, tol: float) -> np.ndarray:
    """Per view and pixel, whether it leaves (by ``tol``) the envelope of the usual look around it: the
    median of the views within ``window`` / 2 seconds, on a grid of a quarter window so that neighbouring
    frames share one median (and are compared with it together)."""
    step = window / 4
    slots = np.round(times / step).astype(int)
    out = np.empty(views.shape[:-1], dtype=bool)
    for slot in np.unique(slots):
        near = np.flatnonzero(np.abs(times - slot * step) <= window / 2)
        env = envelope(
            nan_median(views[near[np.linspace(0, len(near) - 1, min(9, len(near))).round().astype(int)]])
        )
        at = np.flatnonzero(slots == slot)
        out[at] = outside(views[at], env, tol)
    return out


def transient_fraction(
    views: np.ndarray, times: np.ndarray, window: float, tol: float, where: np.ndarray | None = None
) -> np.ndarray:
    """Per view, the fraction of its seen pixels (inside ``where``: the work) that something passing
    covers: unlike two frames as far before as after it that agree with each other, and unlike the usual
    look of the work around it; the largest such fraction over distances up to ``window`` / 2 seconds.

    A hand comes and goes: some pair of frames around it, one before it came and one after it left, agree
    where it was. Frames close in time agree nearly everywhere, also where the work is in progress (where a
    hand usually is), while work that arrives matches the later frame and stays; a pixel painted twice in
    the interval (base colour, then detail) agrees with neither neighbour, and the neighbours disagree.
    The usual look (a median) keeps a frame without the hand from being flagged when both partners show
    one (an arm reaching in from the same side twice).
    """
    n = len(views)
    out = np.zeros(n)
    if n < 3:
        return out
    own = seen(views) if where is None else seen(views) & where[None]
    shown = np.maximum(own.sum(axis=(1, 2)), 1)
    # Only pixels unlike the usual look can be covered: gather those once, then test them against pairs.
    f, y, x = np.nonzero(own & _unusual(views, times, window, tol))
    lo, hi = envelope(views)
    v = views[f, y, x]
    half = window / 2
    for d in range(1, (n - 1) // 2 + 1):
        pick = np.flatnonzero((f >= d) & (f < n - d))
        pick = pick[
            (times[f[pick]] - times[f[pick] - d] <= half) & (times[f[pick] + d] - times[f[pick]] <= half)
        ]
        if not len(pick):
            if not (
                (times[d : n - d] - times[: n - 2 * d] <= half) & (times[2 * d :] - times[d : n - d] <= half)
            ).any():
                break
            continue
        k, yy, xx = f[pick], y[pick], x[pick]
        before, after = (lo[k - d, yy, xx], hi[k - d, yy, xx]), (lo[k + d, yy, xx], hi[k + d, yy, xx])
        moved = (
            outside(v[pick], before, tol)
            & outside(v[pick], after, tol)
            & ~outside(views[k - d, yy, xx], after, tol)
            & np.isfinite(views[k - d, yy, xx, 0])
        )
        out = np.maximum(out, np.bincount(k[moved], minlength=n) / shown)
    return out
