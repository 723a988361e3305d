"""The two model-facing interfaces the metrics use, and the pixel backbone.

Metrics only see features and similarity matrices, so the backbone is swappable: CLIP image
embeddings for real runs, raw pixels where exact answers are needed (tests) or no weights exist.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
from PIL import Image
from scipy.spatial.distance import cdist

from pipeline.layout import letterbox


class FeatureBackbone(Protocol):
    """Embeds frames; `similarity` of an (N, D) feature array is (N, N) with 1 meaning identical."""

    name: str
    duplicate_distance: (
        float  # default: adjacent distance (1 - similarity) at or below which frames are duplicates
    )

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray: ...

    def similarity(self, features: np.ndarray) -> np.ndarray: ...


class TextImageScorer(Protocol):
    """Unit-norm image and text embeddings in one space (CLIP); texts also report truncation."""

    name: str

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray: ...

    def embed_texts(self, texts: Sequence[str]) -> tuple[np.ndarray, list[bool | None]]: ...


class PixelBackbone:
    """Frames letterboxed to `side` px, compared by RMS difference in [0, 1]: similarity = 1 - RMS.

    RMS is linear along a cross-fade, which is what makes the metrics' exact-answer tests possible.
    """

    duplicate_distance = 0.005  # about one grey level of RMS difference

    def __init__(self, side: int = 64) -> None:
        self.side = side
        self.name = f"pixel-{side}"

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        out = []
        for img in images:
            img = img.convert("RGB")
            if img.size != (self.side, self.side):
                img = letterbox(img, self.side)
            out.append(np.asarray(img, dtype=np.float64).reshape(-1) / 255.0)
        return np.stack(out)

    def similarity(self, features: np.ndarray) -> np.ndarray:
        return 1.0 - np.sqrt(cdist(features, features, "sqeuclidean") / features.shape[1])
