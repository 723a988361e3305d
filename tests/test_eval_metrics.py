"""Exact-answer tests of the coherence and progress metrics on cross-fades from a blank canvas.

Frames are f(a) = blank + a * (image - blank) with image values 255 - 8m, so every frame at a = k/8
is an exact uint8 picture and the pixel backbone's RMS distance between f(a) and f(b) is exactly
|a - b| * RMS(image - blank). Expected values below are derived from the alphas alone.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from evaluation.backbones import PixelBackbone
from evaluation.metrics.clip_score import clip_score
from evaluation.metrics.coherence import coherence
from evaluation.metrics.progress import detail_trend, progress

SIDE = 64
JUMP = 0.5


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    return 255 - 8 * rng.integers(0, 32, size=(SIDE, SIDE, 3))


def blend(image: np.ndarray, alphas) -> list[Image.Image]:
    out = []
    for a in alphas:
        arr = 255 + a * (image - 255)
        assert np.all(arr == np.round(arr)), "test frames must be exact uint8 pictures"
        out.append(Image.fromarray(arr.astype(np.uint8)))
    return out


def run(frames):
    bb = PixelBackbone(SIDE)
    sim = bb.similarity(bb.embed_images(frames))
    return (
        coherence(sim, bb.duplicate_distance, JUMP),
        progress(sim, bb.duplicate_distance),
        detail_trend(frames),
    )


def rms(image) -> float:
    return float(np.sqrt(np.mean(((image - 255) / 255.0) ** 2)))


LINEAR = [k / 8 for k in range(9)]


def test_linear_blend_from_blank_is_perfectly_monotone(image):
    coh, prog, trend = run(blend(image, LINEAR))
    assert prog["spearman"] == pytest.approx(1.0)
    assert prog["backtrack_rate"] == 0.0
    assert prog["curve"] == pytest.approx(LINEAR, abs=1e-9)
    assert trend == pytest.approx(1.0)
    assert coh["smoothness"] == pytest.approx(1 - rms(image) / 8, abs=1e-9)
    assert coh["min_similarity"] == pytest.approx(1 - rms(image) / 8, abs=1e-9)
    assert coh["step_cv"] == pytest.approx(0.0, abs=1e-7)
    assert coh["duplicate_rate"] == 0.0
    assert coh["jump_rate"] == 0.0


def test_reverse_is_monotone_to_its_end_but_detail_trend_flips(image):
    """Distance to the final frame cannot see direction (a cross-fade is monotone both ways);
    detail_trend is what tells a painting from its erasure."""
    coh, prog, trend = run(blend(image, LINEAR[::-1]))
    assert prog["spearman"] == pytest.approx(1.0)
    assert prog["curve"] == pytest.approx(LINEAR, abs=1e-9)
    assert prog["backtrack_rate"] == 0.0
    assert trend == pytest.approx(-1.0)
    assert coh["duplicate_rate"] == 0.0 and coh["jump_rate"] == 0.0


def test_shuffle_gives_the_rank_correlation_backtracks_and_jumps_it_must(image):
    alphas = [LINEAR[i] for i in (3, 0, 5, 1, 7, 2, 6, 4, 8)]  # final frame stays last
    coh, prog, trend = run(blend(image, alphas))
    # distances to the final frame are 1 - alpha (all distinct): Spearman's closed form applies
    n = len(alphas)
    closeness_rank = np.argsort(np.argsort(alphas)) + 1
    expected_rho = 1 - 6 * np.sum((np.arange(1, n + 1) - closeness_rank) ** 2) / (n * (n * n - 1))
    assert prog["spearman"] == pytest.approx(expected_rho)
    drops = sum(b < a for a, b in zip(alphas, alphas[1:]))  # alpha falls = moved away from the end
    assert prog["backtrack_rate"] == pytest.approx(drops / 8)
    assert prog["curve"] == pytest.approx([(a - alphas[0]) / (1 - alphas[0]) for a in alphas], abs=1e-9)
    steps = np.abs(np.diff(alphas))
    assert coh["jump_rate"] == pytest.approx(np.mean(steps > JUMP * steps.sum()))
    assert coh["smoothness"] == pytest.approx(1 - rms(image) * steps.mean(), abs=1e-9)
    assert coh["step_cv"] == pytest.approx(steps.std() / steps.mean(), abs=1e-9)
    assert trend == pytest.approx(expected_rho)  # detail is proportional to alpha, as closeness is


def test_duplicates_are_counted_and_ties_get_average_ranks(image):
    alphas = [0, 0, 0.25, 0.25, 0.5, 0.5, 0.75, 1, 1]
    coh, prog, trend = run(blend(image, alphas))
    assert coh["duplicate_rate"] == pytest.approx(4 / 8)  # pairs (0,0) (.25,.25) (.5,.5) (1,1)
    assert prog["backtrack_rate"] == 0.0
    # closeness -d = alpha - 1 ranks, ties averaged by hand: 1.5 1.5 3.5 3.5 5.5 5.5 7 8.5 8.5
    tied = np.array([1.5, 1.5, 3.5, 3.5, 5.5, 5.5, 7, 8.5, 8.5])
    expected = np.corrcoef(np.arange(1, 10), tied)[0, 1]
    assert prog["spearman"] == pytest.approx(expected)
    assert trend == pytest.approx(expected)
    assert expected < 1.0


def test_identical_frames_have_no_defined_rank_correlation(image):
    coh, prog, trend = run(blend(image, [0.5] * 4))
    assert prog["spearman"] is None and prog["curve"] is None and trend is None
    assert coh["duplicate_rate"] == 1.0 and coh["jump_rate"] == 0.0 and coh["step_cv"] is None


def test_single_leap_is_one_jump(image):
    coh, _, _ = run(blend(image, [0, 0.125, 0.25, 1]))
    assert coh["jump_rate"] == pytest.approx(1 / 3)  # 0.75 of 1.0 total change in one step


def test_clip_score_is_100_times_clipped_cosine():
    theta = np.deg2rad([0, 60, 90, 120])
    img = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    txt = np.tile([1.0, 0.0], (4, 1))
    assert clip_score(img, txt) == pytest.approx([100.0, 50.0, 0.0, 0.0], abs=1e-9)
