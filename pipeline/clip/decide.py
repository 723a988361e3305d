"""Pure decisions on L2-normalised CLIP embeddings: relevance, semantic duplicates, progress order.

Kept free of models and frames so every rule is tested on constructed vectors with known answers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (cosine = dot product); zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(n > 0, n, 1.0)


@dataclass(frozen=True)
class Relevance:
    """Per frame: best cosine to a positive prompt, best cosine to a negative prompt and which one."""

    positive: np.ndarray
    negative: np.ndarray
    worst: np.ndarray  # index of the best-matching negative prompt

    @property
    def margin(self) -> np.ndarray:
        return self.positive - self.negative

    def keep(self, margin: float) -> np.ndarray:
        """True where the frame does not match a negative better than the positives by more than `margin`."""
        return self.negative - self.positive <= margin


def relevance(emb: np.ndarray, positives: np.ndarray, negatives: np.ndarray) -> Relevance:
    """Compare each embedding (n, D) with positive (p, D) and negative (q, D) prompt embeddings."""
    pos = emb @ positives.T
    neg = emb @ negatives.T
    return Relevance(positive=pos.max(axis=1), negative=neg.max(axis=1), worst=neg.argmax(axis=1))


def duplicate_groups(emb: np.ndarray, threshold: float, ordered: bool) -> list[list[int]]:
    """Group frames whose cosine to a group's first frame (its anchor) is >= threshold.

    Ordered sources only group consecutive frames (a run); unordered ones join the first matching
    group anywhere. Comparing with the anchor, not the previous frame, keeps slow progress from
    chaining a whole process into one group.
    """
    groups: list[list[int]] = []
    for i in range(len(emb)):
        candidates = groups[-1:] if ordered else groups
        home = next((g for g in candidates if float(emb[g[0]] @ emb[i]) >= threshold), None)
        if home is None:
            groups.append([i])
        else:
            home.append(i)
    return groups


@dataclass(frozen=True)
class ProgressOrder:
    """Frames of an unordered source in progress order, with how far to trust it."""

    order: np.ndarray  # input indices, start first, finished last
    progress: np.ndarray  # per input index, 0 at the start frame, 1 at the finished frame
    confidence: float  # 0..1: do nearest neighbours sit next to each other in the order (above chance)?
    direction: float  # >= 0: how much better the finished end matches the `toward` hint


def _path_consistency(sim: np.ndarray, order: np.ndarray) -> float:
    """0..1: how often a frame's most similar frame sits right next to it in `order`, above chance.

    On a real progression nearest neighbours are adjacent steps (1.0); for frames with no common
    path they land anywhere, adjacent by chance for 2/n of frames (0.0 at chance; a random cloud
    ordered by `progress_order` scores about 0.2, since that order is itself built from similarities).
    """
    n = len(order)
    pos = np.empty(n, dtype=int)
    pos[order] = np.arange(n)
    sim = sim - 2.0 * np.eye(n)  # a frame is not its own neighbour
    hits = np.abs(pos[np.argmax(sim, axis=1)] - pos) == 1
    chance = 2.0 / n
    return max(0.0, (float(hits.mean()) - chance) / (1.0 - chance))


def progress_order(emb: np.ndarray, toward: np.ndarray) -> ProgressOrder:
    """Order frames along the path between the two most different frames.

    The ends of a making process are its most different states (empty start, finished work); the
    end closer to the `toward` hint (finished-minus-start text embedding) is the finished one.
    Progress is the relative cosine distance from start vs. to finish. Confidence is
    `_path_consistency`: near 1 when the frames lie on one path, about 0.2 for a cloud with no progression.
    """
    n = len(emb)
    if n == 0:
        raise ValueError("progress_order needs at least one embedding")
    if n == 1:
        return ProgressOrder(order=np.zeros(1, dtype=int), progress=np.ones(1), confidence=0.0, direction=0.0)
    sim = emb @ emb.T
    a, b = np.unravel_index(int(np.argmin(sim)), sim.shape)
    hint = float(emb[b] @ toward) - float(emb[a] @ toward)
    start, end = (a, b) if hint >= 0 else (b, a)
    from_start = 1.0 - sim[:, start]
    to_end = 1.0 - sim[:, end]
    progress = from_start / np.maximum(from_start + to_end, 1e-12)
    order = np.argsort(progress, kind="stable")
    confidence = _path_consistency(sim, order) if n >= 3 else 0.0
    return ProgressOrder(order=order, progress=progress, confidence=confidence, direction=abs(hint))


def clip_score(image_emb: np.ndarray, text_emb: np.ndarray) -> np.ndarray:
    """torchmetrics' CLIP score per row pair: max(100 * cos(image, text), 0)."""
    return np.maximum(100.0 * np.sum(image_emb * text_emb, axis=-1), 0.0)
