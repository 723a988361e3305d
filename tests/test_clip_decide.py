"""CLIP decision rules on constructed unit vectors whose right answers are known by construction."""

import numpy as np
import pytest

from pipeline.clip.decide import clip_score, duplicate_groups, normalize, progress_order, relevance

D = 64


def basis(*idx: int) -> np.ndarray:
    out = np.zeros((len(idx), D), np.float32)
    out[np.arange(len(idx)), idx] = 1.0
    return out


def mix(*parts: tuple[float, int]) -> np.ndarray:
    """A unit vector that is `w` parts of basis axis `i` for each (w, i)."""
    v = np.zeros(D, np.float32)
    for w, i in parts:
        v[i] += w
    return normalize(v)


def test_relevance_drops_frames_closer_to_a_negative_and_names_it():
    pos, neg = basis(0, 1), basis(10, 11, 12)
    frames = np.stack([mix((1, 0)), mix((1, 1), (0.2, 12)), mix((1, 11), (0.3, 0)), mix((0.5, 0), (0.5, 12))])
    rel = relevance(frames, pos, neg)
    np.testing.assert_array_equal(rel.keep(0.0), [True, True, False, True])  # a tie is kept
    assert rel.worst[2] == 1  # the second negative prompt explains the drop
    np.testing.assert_allclose(rel.margin, rel.positive - rel.negative)
    np.testing.assert_allclose(rel.positive[0], 1.0, atol=1e-6)


def test_relevance_margin_tolerates_a_small_lead_of_the_negative():
    pos, neg = basis(0), basis(1)
    frame = mix((1.0, 0), (1.1, 1))[None]  # negative cosine ahead by ~0.07
    rel = relevance(frame, pos, neg)
    assert not rel.keep(0.0)[0]
    assert rel.keep(0.1)[0]


def test_ordered_duplicates_group_only_consecutive_frames():
    rng = np.random.default_rng(0)
    a, b, c = basis(0, 1, 2)

    def noisy(v):
        return normalize(v + 0.01 * rng.standard_normal(D))

    emb = np.stack([noisy(a), noisy(a), noisy(a), noisy(b), noisy(b), noisy(c), noisy(a)])
    assert duplicate_groups(emb, 0.97, ordered=True) == [[0, 1, 2], [3, 4], [5], [6]]


def test_unordered_duplicates_group_anywhere():
    a, b, c = basis(0, 1, 2)
    emb = np.stack([a, b, a, c, b])
    assert duplicate_groups(emb, 0.99, ordered=False) == [[0, 2], [1, 4], [3]]


def test_slow_drift_is_not_chained_into_one_group():
    # consecutive frames 3 degrees apart (cos 0.9986) drift 27 degrees over the run
    angles = np.radians(np.arange(10) * 3.0)
    emb = np.stack([np.cos(t) * basis(0)[0] + np.sin(t) * basis(1)[0] for t in angles])
    groups = duplicate_groups(emb, 0.995, ordered=True)
    assert len(groups) > 1
    for g in groups:
        assert min(float(emb[g[0]] @ emb[i]) for i in g) >= 0.995


def arc(n: int, rng: np.random.Generator, noise: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n frames along a quarter circle from `start` to `end` (the true progress order is 0..n-1)."""
    start, end = basis(0, 1)
    t = np.linspace(0, np.pi / 2, n)
    emb = np.cos(t)[:, None] * start + np.sin(t)[:, None] * end
    return normalize(emb + noise * rng.standard_normal(emb.shape)), start, end


def test_progress_order_recovers_a_shuffled_path_and_is_confident():
    rng = np.random.default_rng(1)
    emb, start, end = arc(9, rng, noise=0.01)
    perm = rng.permutation(9)
    po = progress_order(emb[perm], toward=normalize(end - start))
    np.testing.assert_array_equal(perm[po.order], np.arange(9))
    assert po.progress[po.order[0]] == pytest.approx(0, abs=1e-5) and po.progress[
        po.order[-1]
    ] == pytest.approx(1)
    assert po.confidence > 0.95
    assert po.direction > 0.5


def test_progress_order_direction_follows_the_hint():
    rng = np.random.default_rng(2)
    emb, start, end = arc(7, rng)
    po = progress_order(emb, toward=normalize(start - end))  # hint says `start` is the finished end
    np.testing.assert_array_equal(po.order, np.arange(7)[::-1])


def test_progress_order_has_low_confidence_on_a_cloud():
    rng = np.random.default_rng(3)
    confidences = [
        progress_order(normalize(rng.standard_normal((12, D))), basis(0)[0]).confidence for _ in range(20)
    ]
    assert np.mean(confidences) < 0.25
    path_conf = progress_order(arc(12, rng, noise=0.02)[0], basis(1)[0]).confidence
    assert path_conf > 0.9


def test_progress_order_edge_cases():
    one = progress_order(basis(3), basis(0)[0])
    assert one.order.tolist() == [0] and one.confidence == 0.0
    two = progress_order(basis(1, 0), basis(0)[0])  # frame 1 is the finished one
    assert two.order.tolist() == [0, 1] and two.confidence == 0.0
    with pytest.raises(ValueError):
        progress_order(np.zeros((0, D), np.float32), basis(0)[0])


def test_clip_score_is_torchmetrics_definition():
    img = np.stack([mix((1, 0)), mix((1, 0)), mix((1, 0))])
    txt = np.stack([mix((1, 0), (1, 1)), mix((1, 1)), mix((-1, 0), (0.5, 1))])
    np.testing.assert_allclose(clip_score(img, txt), [100 / np.sqrt(2), 0.0, 0.0], atol=1e-4)
