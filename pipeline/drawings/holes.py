"""Which subpaths of a filled compound path make one shape together, so each step adds whole shapes.

Subpaths drawn a few at a time give the pixels they have in the whole path only when none left out takes
paint away from one shown: a hole (the counter of an "O", the keyhole in a key) is a subpath that overlaps
another and, under ``fill-rule: evenodd``, any overlap, or under ``nonzero``, one wound the other way.
Showing the outer shape alone would paint the hole's area and the next step erase it: not an addition.
So subpaths that take paint from each other are grouped (transitively: a shape, its holes, an island in a
hole), and a group is shown whole or not at all. Subpaths that lie apart (both eyes), or overlap wound the
same way under ``nonzero`` (the path fills their union), are groups of their own; across groups every
overlap is wound alike, so any set of groups paints what it paints in the whole path.

Overlap is found on the outlines (:mod:`pipeline.drawings.paths`): bounding boxes first, then both
polygons filled on a small raster of the boxes' intersection, eroded by a pixel so that shapes that only
touch along an edge do not count.
"""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.drawings.paths import Subpath

RASTER = 64  # pixels along the longer side of the box where two outlines may overlap
SUBPIXEL = 4  # fillPoly's fractional bits
KERNEL = np.ones((3, 3), np.uint8)


def _signed_area(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def _overlap(a: np.ndarray, b: np.ndarray, box: np.ndarray) -> bool:
    """Whether polygons ``a`` and ``b`` share an area inside ``box`` (x0, y0, x1, y1), more than an edge
    (True too when the numbers are too large or small to raster: then they are kept together). A box of no
    size (a subpath that is a point, as Twemoji has) holds no shared area."""
    side = max(box[2] - box[0], box[3] - box[1])
    if not side > 0:
        return False
    scale = RASTER / side
    shape = (int((box[3] - box[1]) * scale) + 2, int((box[2] - box[0]) * scale) + 2)
    masks = []
    for poly in (a, b):
        pts = (poly - box[:2]) * scale * (1 << SUBPIXEL)
        if not (np.isfinite(pts).all() and np.abs(pts).max() < 1 << 28):
            return True
        mask = np.zeros(shape, np.uint8)
        cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1, cv2.LINE_8, SUBPIXEL)
        masks.append(mask)
    return bool(cv2.erode(masks[0] & masks[1], KERNEL).any())


def _meeting(boxes: np.ndarray) -> list[tuple[int, int]]:
    """Pairs (i < j) whose boxes share an area: a sweep along x, then y compared for the candidates."""
    order = np.argsort(boxes[:, 0], kind="stable")
    x0 = boxes[order, 0]
    pairs = []
    for at, i in enumerate(order):
        later = order[at + 1 : int(np.searchsorted(x0, boxes[i, 2], side="left"))]
        later = later[(boxes[later, 1] < boxes[i, 3]) & (boxes[later, 3] > boxes[i, 1])]
        pairs.extend((min(i, j), max(i, j)) for j in later.tolist())
    return pairs


def groups(subs: list[Subpath], evenodd: bool) -> list[int]:
    """Per subpath, its group: the subpaths that take paint from each other are one group. Groups are
    numbered in the order their first subpath comes in the path data."""
    polys = [np.asarray(s.points, float) for s in subs]
    boxes = np.array([(*p.min(axis=0), *p.max(axis=0)) for p in polys])
    signs = [np.sign(_signed_area(p)) for p in polys]
    parent = list(range(len(subs)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in _meeting(boxes):
        if root(i) == root(j) or (not evenodd and signs[i] == signs[j] != 0):
            continue  # already together, or wound the same way: the path fills their union
        box = np.concatenate([np.maximum(boxes[i, :2], boxes[j, :2]), np.minimum(boxes[i, 2:], boxes[j, 2:])])
        if _overlap(polys[i], polys[j], box):
            parent[max(root(i), root(j))] = min(root(i), root(j))
    number: dict[int, int] = {}
    return [number.setdefault(root(i), len(number)) for i in range(len(subs))]
