"""The fast paths of pipeline.footage.views give exactly what their plain definitions give."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipeline.footage.views import envelope, nan_median


def _sorted_median(views: np.ndarray) -> np.ndarray:
    """The definition: sort (NaN last), take the lower middle of the finite values."""
    ordered = np.sort(views, axis=0)
    count = np.isfinite(ordered).sum(axis=0)
    out = np.take_along_axis(ordered, np.maximum((count - 1) // 2, 0)[None], axis=0)[0]
    out[count == 0] = np.nan
    return out


def _views(rng: np.random.Generator, lead: tuple[int, ...], nan: float) -> np.ndarray:
    """Random views; ``nan``: the share of pixels off view, and (when > 0) whole edge rows off view (the
    first two in every other view, the last two in the others), as in warped frames."""
    v = rng.random(lead + (5, 7, 3)).astype(np.float32)
    if nan:
        v[rng.random(v.shape[:-1]) < nan] = np.nan
        flat = v.reshape((-1,) + v.shape[-3:])
        flat[::2, :2] = np.nan
        flat[1::2, -2:] = np.nan
    return v


@pytest.mark.parametrize("n", range(1, 16))
def test_nan_median_equals_sorting(n: int) -> None:
    rng = np.random.default_rng(n)
    for nan, infinite in ((0.0, False), (0.3, False), (0.3, True), (0.9, False)):
        v = _views(rng, (n,), nan)
        if infinite:  # infinities are values no view sees, as in np.isfinite
            v[0, 2, 0] = np.inf
            v[-1, 3, 1] = -np.inf
        for x in (v, np.round(v * 4) / 4, v.astype(np.float64)):  # also ties, and doubles
            got = nan_median(x)
            assert got.dtype == x.dtype and np.array_equal(got, _sorted_median(x), equal_nan=True)


@pytest.mark.parametrize("lead,shift", [((), 1), ((1,), 1), ((40,), 1), ((3, 25), 1), ((70,), 2)])
def test_envelope_equals_one_view_at_a_time(lead: tuple[int, ...], shift: int) -> None:
    """Views eroded and dilated together give each view's own result, also at their edges where a
    whole border row is off view (OpenCV's border value, not the neighbouring view, meets it)."""
    v = _views(np.random.default_rng(len(lead) + shift), lead, 0.3)
    k = np.ones((2 * shift + 1, 2 * shift + 1), np.uint8)
    flat = v.reshape((-1,) + v.shape[-3:])
    lo = np.stack([cv2.erode(np.where(np.isnan(x), np.inf, x), k) for x in flat]).reshape(v.shape)
    hi = np.stack([cv2.dilate(np.where(np.isnan(x), -np.inf, x), k) for x in flat]).reshape(v.shape)
    got_lo, got_hi = envelope(v, shift)
    assert np.array_equal(got_lo, lo) and np.array_equal(got_hi, hi)
