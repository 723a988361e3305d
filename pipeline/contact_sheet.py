"""Contact sheets: one PNG per task with a thumbnail of every grid, so a curator can look, not read."""
from __future__ import annotations

import io

from PIL import Image, ImageDraw

THUMB, LABEL, COLS = 256, 14, 6


def contact_sheet(items: list[tuple[str, bytes]], title: str, max_items: int = 60) -> Image.Image:
    """items: (key, grid JPEG bytes)."""
    items = items[:max_items]
    rows = max(1, (len(items) + COLS - 1) // COLS)
    cols = min(COLS, max(1, len(items)))
    sheet = Image.new("RGB", (cols * THUMB, 24 + rows * (THUMB + LABEL)), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((6, 6), title, fill="black")
    for i, (key, jpg) in enumerate(items):
        img = Image.open(io.BytesIO(jpg)).convert("RGB")
        img.thumbnail((THUMB, THUMB))
        x, y = (i % COLS) * THUMB, 24 + (i // COLS) * (THUMB + LABEL)
        sheet.paste(img, (x, y))
        draw.text((x + 2, y + THUMB), key[:40], fill="black")
    return sheet
