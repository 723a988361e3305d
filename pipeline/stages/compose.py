"""Tile and caption: each selected sequence becomes one grid image with its caption."""
from __future__ import annotations

import numpy as np

from pipeline.layout import tile
from pipeline.work import Work


def crop(img: np.ndarray, box: list[float] | None) -> np.ndarray:
    """The part of a frame inside a fractional (x0, y0, x1, y1) box; the whole frame when there is none."""
    if not box:
        return img
    h, w = img.shape[:2]
    return img[round(box[1] * h):round(box[3] * h), round(box[0] * w):round(box[2] * w)]


class Tile:
    name = "tile"

    def __call__(self, work: Work) -> Work:
        layout = work.source.task.layout
        for seq in work.sequences:
            box = seq.segment_scores.get("crop")
            seq.grid = tile([crop(f.image, box) for f in seq.frames], layout)
        return work


class Caption:
    name = "caption"

    def __call__(self, work: Work) -> Work:
        for seq in work.sequences:
            seq.caption = work.source.task.caption(work.source.subject)
        return work
