"""Tile and caption: each selected sequence becomes one grid image with its caption."""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.layout import tile
from pipeline.work import Frame, Work


def in_reference(frame: Frame, size: tuple[int, int] | None) -> np.ndarray:
    """The frame as its group's reference view sees it: re-framed shots, zooms and jitter undone (white
    where the frame does not reach), exposure and white balance brought to the finished work's."""
    img = frame.image
    if frame.gain is not None and not np.allclose(frame.gain, 1.0, atol=0.01):
        img = np.clip(img.astype(np.float32) * frame.gain, 0, 255).astype(np.uint8)
    if size is None or not frame.moved:
        return img
    return cv2.warpAffine(
        img,
        frame.warp[:2].astype(np.float32),
        size,
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(255, 255, 255),
    )


def crop(img: np.ndarray, box: list[float] | None) -> np.ndarray:
    """The part of a frame inside a fractional (x0, y0, x1, y1) box; the whole frame when there is none."""
    if not box:
        return img
    h, w = img.shape[:2]
    return img[round(box[1] * h) : round(box[3] * h), round(box[0] * w) : round(box[2] * w)]


class Tile:
    name = "tile"

    def __call__(self, work: Work) -> Work:
        layout = work.source.task.layout
        for seq in work.sequences:
            box = seq.segment_scores.get("crop")
            seq.grid = tile([crop(in_reference(f, seq.size), box) for f in seq.frames], layout)
        return work


class Caption:
    name = "caption"

    def __call__(self, work: Work) -> Work:
        for seq in work.sequences:
            seq.caption = work.source.task.caption(work.source.subject)
        return work
