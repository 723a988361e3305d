"""CLIP score as torchmetrics and the paper define it: 100 x max(cos(image, text), 0)."""

from __future__ import annotations

import numpy as np


def clip_score(image_emb: np.ndarray, text_emb: np.ndarray) -> np.ndarray:
    """Row-wise scores of paired unit-norm embeddings ((D,) or (N, D) each)."""
    cos = np.sum(np.atleast_2d(image_emb) * np.atleast_2d(text_emb), axis=-1)
    return 100.0 * np.maximum(cos, 0.0)
