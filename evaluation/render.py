"""One look at a sequence: its frames in a single numbered row, the same for every method.

Used for the judge (so it never has to know a serpentine reading order, and 2x2 and 3x3 methods
are shown alike) and for the report's image strips.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from PIL import Image, ImageDraw

from pipeline.layout import letterbox

GAP = 4


def strip(frames: Sequence[Image.Image], cell: int, numbered: bool = True) -> Image.Image:
    out = Image.new("RGB", (len(frames) * cell + (len(frames) - 1) * GAP, cell), (0, 0, 0))
    draw = ImageDraw.Draw(out)
    for i, frame in enumerate(frames):
        x = i * (cell + GAP)
        out.paste(letterbox(frame, cell), (x, 0))
        if numbered:
            label = str(i + 1)
            box = draw.textbbox((0, 0), label)
            w, h = box[2] - box[0] + 6, box[3] - box[1] + 6
            draw.rectangle((x, 0, x + w, h), fill=(0, 0, 0))
            draw.text((x + 3 - box[0], 3 - box[1]), label, fill=(255, 255, 255))
    return out


def jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def grid(frames: Sequence[Image.Image], cell: int) -> Image.Image:
    """A near-square raster grid of the frames (white where cells are left over).

    Stands in for the grid when a method delivers separate frames, so the grid CLIP score exists
    for it too; the JSONL marks such scores `grid_composed`.
    """
    cols = 1
    while cols * cols < len(frames):
        cols += 1
    rows = -(-len(frames) // cols)
    out = Image.new("RGB", (cols * cell, rows * cell), (255, 255, 255))
    for i, frame in enumerate(frames):
        out.paste(letterbox(frame, cell), ((i % cols) * cell, (i // cols) * cell))
    return out
