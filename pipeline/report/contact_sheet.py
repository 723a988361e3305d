"""Contact sheets: one PNG per task with a thumbnail of every grid, so a curator can look, not read.
Under a video's grid, its shots (pipeline.report.shot_strip): green = linked into the sequence."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw

THUMB, LABEL, STRIP, COLS = 256, 14, 22, 6


def contact_sheet(
    items: list[tuple[str, bytes, bytes | None]], title: str, max_items: int = 60
) -> Image.Image:
    """items: (key, grid JPEG bytes, shot strip PNG bytes or None)."""
    items = items[:max_items]
    rows = max(1, (len(items) + COLS - 1) // COLS)
    cols = min(COLS, max(1, len(items)))
    cell = THUMB + STRIP + LABEL
    sheet = Image.new("RGB", (cols * THUMB, 24 + rows * cell), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((6, 6), title, fill="black")
    for i, (key, jpg, shots) in enumerate(items):
        img = Image.open(io.BytesIO(jpg)).convert("RGB")
        img.thumbnail((THUMB, THUMB))
        x, y = (i % COLS) * THUMB, 24 + (i // COLS) * cell
        sheet.paste(img, (x, y))
        if shots:
            strip = Image.open(io.BytesIO(shots)).convert("RGB")
            strip.thumbnail((THUMB - 4, STRIP - 2))
            sheet.paste(strip, (x + 2, y + THUMB + 1))
        draw.text((x + 2, y + THUMB + STRIP), key[:40], fill="black")
    return sheet
