"""The continuous progress measure (pipeline.footage.progress) and the steps chosen in it."""

from __future__ import annotations

from collections import Counter
from itertools import pairwise

import cv2
import numpy as np
import pytest
import skimage.data
from scipy.stats import spearmanr

from pipeline.config import ProgressConfig, SelectConfig
from pipeline.demo.synthetic import _hand
from pipeline.footage.progress import measure
from pipeline.footage.views import thumb
from pipeline.stages.select import Select, jitter, pick_steps, shares
from testkit.styles import STYLES, make_style

CFG = ProgressConfig()


def _art() -> np.ndarray:
    return cv2.resize(skimage.data.astronaut(), (240, 180), interpolation=cv2.INTER_AREA)


def _views(images: list[np.ndarray]) -> np.ndarray:
    return np.stack([thumb(img) for img in images])


def _blur_pyramid(art: np.ndarray, a: float) -> np.ndarray:
    """Refinement of the whole picture at once: a blur that shrinks from a big sigma to none."""
    sigma = 12.0 * (1 - a) ** 1.5
    return cv2.GaussianBlur(art, (0, 0), sigma) if sigma > 0.3 else art


def _process(name: str, a: np.ndarray) -> list[np.ndarray]:
    art = _art()
    if name == "blur pyramid":
        return [_blur_pyramid(art, x) for x in a]
    style = make_style(name, art, np.random.default_rng(3))
    return [style.at(float(x)) for x in a]


@pytest.mark.parametrize("name", ["blur pyramid", "layered", "reveal"])
def test_progress_rises_with_the_truth_and_the_chosen_steps_are_spread(name):
    a = np.concatenate([np.zeros(3), np.linspace(0, 1, 60), np.ones(4)])
    progress = measure(_views(_process(name, a)), CFG.noise, CFG.coarsest)
    curve = progress.curve
    assert spearmanr(a, curve).statistic >= 0.95
    normalised = (curve - curve.min()) / np.ptp(curve)
    share = shares(progress.components)
    chosen = pick_steps(list(normalised), 9, 0.005, share >= CFG.min_share)
    assert chosen is not None and chosen[0] == 0 and chosen[-1] == len(a) - 1
    assert min(share[i, j] for i, j in pairwise(chosen)) >= CFG.min_share
    assert all(a[j] > a[i] for i, j in pairwise(chosen))


def test_each_style_starts_blank_and_ends_finished():
    art = _art()
    for name in STYLES:
        style = make_style(name, art, np.random.default_rng(0))
        end = style.at(1.0)
        off = (end != art).any(axis=-1)
        if name == "layered":  # the line art stays on top of the finished picture
            off &= ~style.lines
        assert off.mean() < 0.001, name  # reveal's order leaves its last pixel
        assert np.ptp(style.at(0.0).astype(int)) == 0, name  # an untouched surface


def test_a_hold_with_a_passing_hand_and_slight_shake_is_one_state():
    """Twenty frames of one state of the work, shaken by a pixel each way, a hand over it in four of them,
    between the untouched start and the finished work: the hold gives one state."""
    art, rng = _art(), np.random.default_rng(1)
    style = make_style("refine", art, rng)
    held = style.at(0.5)
    images = [style.at(0.0)] * 4
    for i in range(20):
        dx, dy = rng.integers(-1, 2, 2)
        img = cv2.warpAffine(
            held,
            np.float32([[1, 0, dx], [0, 1, dy]]),
            (art.shape[1], art.shape[0]),
            borderMode=cv2.BORDER_REPLICATE,
        )
        if 8 <= i < 12:
            img = img.copy()
            _hand(img, 120 + 10 * (i - 8), 100, 0.8)
        images.append(img)
    images += [art] * 4
    parts = measure(_views(images), CFG.noise, CFG.coarsest).components
    states = Select(SelectConfig(), CFG, 0.08).states(parts, jitter(parts), Counter())
    assert len([s for s in states if 4 <= s < 24]) == 1, states


def test_a_state_differs_from_the_next_by_the_component_that_sees_it():
    """Late detail moves the fine band and hardly the coarse base: the share between two states is taken in
    the component that changes most."""
    parts = np.array([[0.0, 0.0], [0.5, 0.1], [0.52, 0.9]])
    share = shares(parts)
    assert share[0, 1] == pytest.approx(0.5) and share[1, 2] == pytest.approx(0.8)
    assert share[1, 0] == share[0, 1]


def test_rising_and_smoothed_equal_scipys_spearman_and_median_filter():
    """The process gate's rank correlation and running median, in numpy (scipy's import costs a second of
    start-up), give scipy's values: ties, flat and short curves included."""
    from scipy.ndimage import median_filter

    from pipeline.stages.process import rising, smoothed

    rng = np.random.default_rng(0)
    curves = [rng.random(n) for n in (2, 3, 7, 40)]
    curves += [np.round(rng.random(30), 1), np.linspace(0, 1, 9) ** 2, np.r_[0.0, 0.5, 0.5, 0.2, 1.0, 1.0]]
    for c in curves:
        assert rising(c) == pytest.approx(spearmanr(np.arange(len(c)), c).statistic, abs=1e-12)
        assert np.array_equal(smoothed(c), median_filter(c, size=3, mode="nearest"))
    assert rising(np.full(5, 0.3)) == 0.0 and rising(np.array([0.2])) == 0.0
    assert rising(np.arange(6.0)[::-1]) == pytest.approx(-1.0)


def test_a_state_is_shown_by_a_frame_of_its_hold_not_by_a_fade_into_the_next():
    """Two stills too alike to be two states (one small piece added), joined by a cross-fade: they are one
    state, and the frame that stands for it is one of a hold, not the mix in the middle of the fade (its
    progress is the most typical of the run, which is why the typical frame alone is not enough)."""
    start, end = np.zeros(6), np.ones(6)
    a, b = np.full(6, 0.50), np.full(6, 0.515)
    fade = [a + (b - a) * w for w in (0.33, 0.5, 0.67)]
    parts = np.stack([start] * 4 + [a] * 3 + fade + [b] * 3 + [end] * 4)
    states = Select(SelectConfig(), CFG, 0.08).states(parts, jitter(parts), Counter())
    middle = [s for s in states if 4 <= s < 13]
    assert len(middle) == 1 and middle[0] not in (7, 8, 9), states


def test_a_state_passed_through_between_two_holds_is_not_a_step():
    """Held stills joined by one-frame transitions (a fade too faint to measure, a piece being set down):
    the transitions are not states. A process that never holds (continuous painting) keeps every state."""
    held = [np.full(6, x) for x in (0.0, 0.3, 0.6, 1.0)]
    frames = []
    for a, b in pairwise(held):
        frames += [a] * 4 + [a + 0.6 * (b - a)]
    parts = np.stack(frames + [held[-1]] * 4)
    times = np.arange(len(parts)) * 0.25
    drops: Counter = Counter()
    select = Select(SelectConfig(), CFG, 0.08)
    states = select.states(parts, jitter(parts), drops, times=times)
    assert sorted({round(float(parts[s][0]), 2) for s in states}) == [0.0, 0.3, 0.6, 1.0], states
    assert sum(v for k, v in drops.items() if k.startswith("passed through")) == 3
    # Frames dropped around a state (a hand before and after it): a state seen briefly, kept.
    gapped = times + 0.75 * (np.arange(len(parts)) >= 5) + 0.75 * (np.arange(len(parts)) >= 6)
    assert len(select.states(parts, jitter(parts), Counter(), times=gapped)) == 5
    ramp = np.linspace(0, 1, 15)[:, None].repeat(6, axis=1)
    assert len(select.states(ramp, jitter(ramp), Counter(), times=np.arange(15) * 0.25)) == 15
