"""Process styles for the footage fixtures: how a piece of work looks at progress ``a`` in [0, 1].

Today's fixtures revealed the finished picture region by region (sketch, blocked colour, detail along a
painting order), and built boards piece by piece. Tutorials are made in other ways too, and each of these
breaks an assumption a per-pixel "matches the final state" test makes:

- ``reveal``: the finished picture appears region by region (sketch, colour blocks, detail): today's.
- ``refine``: coarse to fine over the whole canvas: sketch lines, blurred colour blocks, then finer and
  finer passes, each laid patch by patch all over the picture. No pixel matches the end until late.
- ``layered``: line art, flat colours region by region, shading, then detail (how illustration and
  digital art are made); the line art stays on top to the end.
- ``pieces``: irregular pieces added one at a time onto an empty plate (collage, mosaic, LEGO seen from
  above): each piece arrives whole.
- ``glaze``: translucent washes over large soft areas, each deepening tone and colour a little (watercolour
  glazing, airbrush): every pixel approaches its final value in several small moves.

Every style starts on an untouched surface and ends on its finished picture, and ``at`` is deterministic
for one seed, so a frame's truth is its ``a``.
"""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.demo.synthetic import _canvas_at, _order_map

STYLES = ("reveal", "refine", "layered", "pieces", "glaze")
PAPER = 250  # an untouched sheet


def _sweep(order: np.ndarray, u: float) -> np.ndarray:
    """Pixels a pass running along ``order`` has reached at u (all of them from 1 on)."""
    return order < u if u < 1 else np.ones(order.shape, bool)


def _line_art(art: np.ndarray) -> np.ndarray:
    """Where an illustrator draws lines: the main edges of the picture."""
    grey = cv2.GaussianBlur(cv2.cvtColor(art, cv2.COLOR_RGB2GRAY), (5, 5), 0)
    return cv2.Canny(grey, 50, 130) > 0


def _patches(h: int, w: int, rng: np.random.Generator, n: int = 7) -> np.ndarray:
    """A random rank in [0, 1) per pixel, constant over n x n patches: a pass laid patch by patch."""
    ranks = rng.permutation(n * n).reshape(n, n).astype(np.float32) / (n * n)
    return cv2.resize(ranks, (w, h), interpolation=cv2.INTER_NEAREST)


class Style:
    """The work at any progress; subclasses say how it is made."""

    def __init__(self, art: np.ndarray, rng: np.random.Generator) -> None:
        self.art = art
        self.h, self.w = art.shape[:2]
        self.order = _order_map(self.h, self.w, rng)
        self.blank = np.full_like(art, PAPER)

    def at(self, a: float) -> np.ndarray:
        raise NotImplementedError


class Reveal(Style):
    def __init__(self, art: np.ndarray, rng: np.random.Generator) -> None:
        super().__init__(art, rng)
        edges = cv2.Canny(cv2.cvtColor(art, cv2.COLOR_RGB2GRAY), 60, 140)
        self.sketch = np.full_like(art, PAPER)
        self.sketch[edges > 0] = (90, 90, 90)
        self.blocked = cv2.medianBlur(
            cv2.resize(
                cv2.resize(art, (self.w // 12, self.h // 12)),
                (self.w, self.h),
                interpolation=cv2.INTER_NEAREST,
            ),
            5,
        )

    def at(self, a: float) -> np.ndarray:
        return _canvas_at(self.art, self.sketch, self.blocked, self.order, a)


class Refine(Style):
    """Sketch (the first 12%), then passes from colour blocks to the finished detail, each laid patch by
    patch over the whole canvas in its own random order."""

    SKETCH = 0.12

    def __init__(self, art: np.ndarray, rng: np.random.Generator) -> None:
        super().__init__(art, rng)
        sketch = self.blank.copy()
        sketch[_line_art(art)] = (110, 110, 110)
        blocks = cv2.resize(
            cv2.resize(art, (max(2, self.w // 14), max(2, self.h // 14)), interpolation=cv2.INTER_AREA),
            (self.w, self.h),
            interpolation=cv2.INTER_NEAREST,
        )
        s = self.w / 30
        self.passes = [sketch, cv2.GaussianBlur(blocks, (0, 0), s)]
        self.passes += [cv2.GaussianBlur(art, (0, 0), s / 2**k) for k in (1, 2, 3)] + [art]
        self.ranks = [_patches(self.h, self.w, rng) for _ in self.passes[1:]]

    def at(self, a: float) -> np.ndarray:
        out = self.blank.copy()
        first = _sweep(self.order, a / self.SKETCH)
        out[first] = self.passes[0][first]
        u = max(0.0, a - self.SKETCH) / (1 - self.SKETCH) * len(self.ranks)
        for k, (image, rank) in enumerate(zip(self.passes[1:], self.ranks)):
            done = rank < u - k
            out[done] = image[done]
        return out


class Layered(Style):
    """Line art (0-20%), flat colours one colour region after another (20-55%), shading over the flats
    (55-80%), detail (80-100%); the lines stay on top throughout."""

    def __init__(self, art: np.ndarray, rng: np.random.Generator, colours: int = 6) -> None:
        super().__init__(art, rng)
        self.lines = _line_art(art)
        smooth = cv2.GaussianBlur(art, (0, 0), self.w / 60).reshape(-1, 3).astype(np.float32)
        crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 1.0)
        cv2.setRNGSeed(int(rng.integers(1 << 30)))
        _, labels, centres = cv2.kmeans(smooth, colours, None, crit, 2, cv2.KMEANS_PP_CENTERS)
        self.labels = labels.reshape(self.h, self.w)
        self.flat = centres[self.labels].astype(np.uint8)
        self.region_order = rng.permutation(colours)
        lum = cv2.cvtColor(art, cv2.COLOR_RGB2GRAY).astype(np.float32)
        flat_lum = cv2.cvtColor(self.flat, cv2.COLOR_RGB2GRAY).astype(np.float32)
        shade = cv2.GaussianBlur(lum, (0, 0), 2) / np.maximum(cv2.GaussianBlur(flat_lum, (0, 0), 2), 1)
        self.shaded = np.clip(self.flat * shade[..., None], 0, 255).astype(np.uint8)

    def at(self, a: float) -> np.ndarray:
        out = self.blank.copy()
        u = np.clip((a - 0.2) / 0.35, 0, 1) * len(self.region_order)
        for k, label in enumerate(self.region_order):
            filled = (self.labels == label) & _sweep(self.order, u - k)
            out[filled] = self.flat[filled]
        shaded = _sweep(self.order, (a - 0.55) / 0.25)
        out[shaded] = self.shaded[shaded]
        detail = _sweep(self.order, (a - 0.8) / 0.2)
        out[detail] = self.art[detail]
        drawn = self.lines & _sweep(self.order, a / 0.2)
        out[drawn] = (40, 35, 35)
        return out


class Pieces(Style):
    """Irregular pieces (cells around random seeds) added whole, one after another, onto a plain plate."""

    def __init__(self, art: np.ndarray, rng: np.random.Generator, count: int = 12) -> None:
        super().__init__(art, rng)
        seeds = rng.random((count, 2)) * [self.w, self.h]
        yy, xx = np.mgrid[0 : self.h, 0 : self.w]
        self.cells = np.argmin(
            (xx[..., None] - seeds[:, 0]) ** 2 + (yy[..., None] - seeds[:, 1]) ** 2, axis=-1
        )
        self.count = count
        self.blank = np.full_like(art, 200)
        self.centres = [(float(seeds[k, 0]), float(seeds[k, 1])) for k in range(count)]

    def at(self, a: float) -> np.ndarray:
        out = self.blank.copy()
        placed = self.cells < round(a * self.count)
        out[placed] = self.art[placed]
        return out


class Glaze(Style):
    """Eight translucent washes, each over a large soft area and spread along the painting order; together
    they bring every pixel from the paper to the finished colour."""

    def __init__(self, art: np.ndarray, rng: np.random.Generator, washes: int = 8) -> None:
        super().__init__(art, rng)
        masks = [
            cv2.resize(rng.random((3, 3)).astype(np.float32), (self.w, self.h), interpolation=cv2.INTER_CUBIC)
            for _ in range(washes)
        ]
        weights = np.clip(np.stack(masks), 0.05, None)
        self.weights = weights / weights.sum(axis=0)  # per pixel the washes sum to the whole way
        self.orders = [np.clip(self.order + rng.normal(0, 0.05), 0, 1) for _ in range(washes)]

    def at(self, a: float) -> np.ndarray:
        u = a * len(self.weights)
        depth = np.zeros((self.h, self.w), np.float32)
        for k, (weight, order) in enumerate(zip(self.weights, self.orders)):
            depth += weight * _sweep(order, u - k)
        paper = self.blank.astype(np.float32)
        return np.clip(
            np.rint(paper + (self.art.astype(np.float32) - paper) * depth[..., None]), 0, 255
        ).astype(np.uint8)


KINDS = {"reveal": Reveal, "refine": Refine, "layered": Layered, "pieces": Pieces, "glaze": Glaze}


def make_style(name: str, art: np.ndarray, rng: np.random.Generator) -> Style:
    """The style ``name`` (one of STYLES) painting ``art``."""
    if name not in KINDS:
        raise ValueError(f"unknown process style {name!r}; one of {STYLES}")
    return KINDS[name](art, rng)
