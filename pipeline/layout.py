"""Grid layouts: tile N step frames into one image and split a grid back into frames in step order.

Training and evaluation use :func:`split`; the pipeline uses :func:`tile`. Reading orders:
``serpentine`` (row 1 left->right, row 2 right->left, ...; on 2x2 this is the paper's U-turn)
and ``raster`` (every row left->right, how most other methods tile their frames).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, model_validator

Order = Literal["serpentine", "raster"]
WHITE = (255, 255, 255)
BLACK = (0, 0, 0)


class Layout(BaseModel):
    """A rows x cols grid of square cells with a step reading order and black separators."""

    model_config = ConfigDict(frozen=True)

    rows: int = Field(ge=1, le=16)
    cols: int = Field(ge=1, le=16)
    cell: int = Field(ge=16, description="cell side in pixels")
    order: Order = "serpentine"
    separator: int = Field(default=4, ge=0, description="black line width between cells, px")

    @model_validator(mode="after")
    def _separator_fits(self) -> Layout:
        if self.separator * 2 >= self.cell:
            raise ValueError(f"separator {self.separator}px is too wide for {self.cell}px cells")
        return self

    @property
    def frames(self) -> int:
        return self.rows * self.cols

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the whole grid in pixels."""
        return self.cols * self.cell, self.rows * self.cell

    @property
    def positions(self) -> list[tuple[int, int]]:
        """(row, col) of each step, in step order."""
        out = []
        for r in range(self.rows):
            cols = range(self.cols)
            if self.order == "serpentine" and r % 2 == 1:
                cols = reversed(cols)
            out.extend((r, c) for c in cols)
        return out

    @property
    def final_cell(self) -> tuple[int, int]:
        """(row, col) of the last step: bottom-right for 3x3 serpentine, bottom-left for 2x2."""
        return self.positions[-1]

    @property
    def inset(self) -> int:
        """White margin kept free on every side of a cell so separators never cover a frame."""
        return (self.separator + 1) // 2

    @property
    def content(self) -> int:
        """Side of the area inside a cell that holds the frame (the cell minus half a separator each side)."""
        return self.cell - 2 * self.inset

    def cell_box(self, step: int, size: tuple[int, int] | None = None) -> tuple[int, int, int, int]:
        """Pixel box (x0, y0, x1, y1) of a step's whole cell, in a grid of ``size`` (default: native)."""
        r, c = self.positions[step]
        w, h = size or self.size
        return (
            round(c * w / self.cols),
            round(r * h / self.rows),
            round((c + 1) * w / self.cols),
            round((r + 1) * h / self.rows),
        )

    def content_box(self, step: int, size: tuple[int, int] | None = None) -> tuple[int, int, int, int]:
        """Pixel box of the frame area of a step's cell (inside the separators)."""
        w, h = size or self.size
        x0, y0, x1, y1 = self.cell_box(step, (w, h))
        m = self.inset * w / self.size[0]
        n = self.inset * h / self.size[1]
        return round(x0 + m), round(y0 + n), round(x1 - m), round(y1 - n)

    def describe(self) -> dict:
        """The shard-json `layout` record."""
        return {
            "rows": self.rows,
            "cols": self.cols,
            "order": self.order,
            "cell": self.cell,
            "separator": self.separator,
            "size": list(self.size),
            "positions": [list(p) for p in self.positions],
        }


def letterbox(frame: Image.Image | np.ndarray, side: int) -> Image.Image:
    """Fit a frame inside a white ``side`` x ``side`` square, aspect kept, centred."""
    img = frame if isinstance(frame, Image.Image) else Image.fromarray(np.asarray(frame))
    img = img.convert("RGB")
    scale = min(side / img.width, side / img.height)
    w, h = max(1, round(img.width * scale)), max(1, round(img.height * scale))
    out = Image.new("RGB", (side, side), WHITE)
    if (w, h) != img.size:  # rendered drawings already come at the cell size
        img = img.resize((w, h), Image.Resampling.LANCZOS)
    out.paste(img, ((side - w) // 2, (side - h) // 2))
    return out


def fills(frame: Image.Image | np.ndarray, side: int) -> np.ndarray:
    """The frame's pixels in a ``side`` square: as they are when an RGB frame already fills it (rendered
    drawings come at the cell size: a white square and a paste under each cost about 8% of tiling), else
    letterboxed."""
    if isinstance(frame, np.ndarray) and frame.shape == (side, side, 3) and frame.dtype == np.uint8:
        return frame
    return np.asarray(letterbox(frame, side))


def tile(frames: Sequence[Image.Image | np.ndarray], layout: Layout) -> Image.Image:
    """Place frames (in step order) into their cells; draw the separators."""
    if len(frames) != layout.frames:
        raise ValueError(
            f"layout {layout.rows}x{layout.cols} needs {layout.frames} frames, got {len(frames)}"
        )
    side = layout.content
    arr = np.full((layout.size[1], layout.size[0], 3), 255, np.uint8)
    for step, frame in enumerate(frames):
        x0, y0, _, _ = layout.content_box(step)
        arr[y0 : y0 + side, x0 : x0 + side] = fills(frame, side)
    half, width = layout.separator // 2, layout.separator
    for c in range(1, layout.cols):
        x = c * layout.cell - half
        arr[:, x : x + width] = BLACK
    for r in range(1, layout.rows):
        y = r * layout.cell - half
        arr[y : y + width, :] = BLACK
    return Image.fromarray(arr)


def split(grid: Image.Image | np.ndarray, layout: Layout) -> list[Image.Image]:
    """Frames of a grid in step order (the content area of each cell); works on resized grids too."""
    img = grid if isinstance(grid, Image.Image) else Image.fromarray(np.asarray(grid))
    return [img.crop(layout.content_box(s, img.size)) for s in range(layout.frames)]
