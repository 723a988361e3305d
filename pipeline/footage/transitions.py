"""Transitions between states: cross-fades (a blend of two steps is never a step) and transient objects
(a hand passing over the work), both judged on aligned, normalised views."""
from __future__ import annotations

import numpy as np

from pipeline.footage.views import differs, envelope, nan_median, outside, seen

RESIDUAL_MAX = 0.03  # of a pixel's change between the neighbours, what one mix may leave unexplained
MIN_CHANGE = 0.02  # a fade changes at least this fraction of the view (a brush stroke changes less)


def blend_share(prev: np.ndarray, cur: np.ndarray, nxt: np.ndarray, tol: float) -> float:
    """Of the pixels that change between a frame's neighbours, the share that sit part-way between them
    by one common amount (0 when that amount is ~0 or ~1).

    A cross-fade mixes two whole states in one proportion, so every changing pixel is the same part of the
    way between them; real work changes a pixel at once (paint arrives, a piece is placed), so most equal
    one neighbour or the other and the few part-way (the edge of a stroke) are part-way by any amount.
    """
    changing = differs(prev, nxt, 2 * tol, shift=0) & seen(cur)
    if changing.sum() < max(8, MIN_CHANGE * seen(cur).sum()):
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
    return float((np.abs(alpha - mix) < 0.15).mean())


def _median(views: np.ndarray, idx: np.ndarray, most: int = 7) -> np.ndarray:
    """Median of at most ``most`` of the views ``idx``, spread evenly (a window's median, cheaply)."""
    return nan_median(views[idx[np.linspace(0, len(idx) - 1, min(most, len(idx))).round().astype(int)]])


def transient_fraction(views: np.ndarray, times: np.ndarray, window: float, tol: float,
                       where: np.ndarray | None = None) -> np.ndarray:
    """Per view, the fraction of its seen pixels (inside ``where``: the work) unlike both what came before
    and what comes after, where those two agree.

    Past and future states are medians over ``window`` seconds on each side: a hand that stays for less
    than half of that drops out of both, while work that arrives matches the future and stays. The
    windows start on a grid of a quarter window, so their medians are shared by neighbouring frames.
    """
    step = window / 4
    states: dict[tuple[int, int], tuple[np.ndarray, tuple[np.ndarray, np.ndarray]] | None] = {}

    def state(slot: int, side: int):  # median and envelope of the window before (-1) / after (+1) a slot
        if (slot, side) not in states:
            edge = slot * step
            idx = np.flatnonzero((times >= edge - window) & (times < edge) if side < 0
                                 else (times > edge) & (times <= edge + window))
            m = _median(views, idx) if len(idx) >= 2 else None
            states[slot, side] = (m, envelope(m)) if m is not None else None
        return states[slot, side]

    agree: dict[tuple[int, int], np.ndarray] = {}
    out = np.zeros(len(views))
    for i in range(len(views)):
        p_slot, f_slot = int(np.floor(times[i] / step)), int(np.ceil(times[i] / step))
        past, future = state(p_slot, -1), state(f_slot, 1)
        if past is None or future is None:
            continue
        if (p_slot, f_slot) not in agree:
            agree[p_slot, f_slot] = ~outside(past[0], future[1], tol)
        own = seen(views[i]) if where is None else seen(views[i]) & where
        # Covered and then uncovered: unlike before and after, where before and after agree (a pixel
        # painted twice in the window, first the base colour then the detail, agrees with neither).
        moved = outside(views[i], past[1], tol) & outside(views[i], future[1], tol) & agree[p_slot, f_slot]
        out[i] = float(moved[own].mean()) if own.any() else 0.0
    return out
