"""A strip of a video's shots for the contact sheet: one thumbnail per shot, framed green when the shot
belongs to the group of linked shots the sequence was cut from, blue when it is in another process that
was not chosen, grey when it showed no process (title card, talking head, B-roll)."""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image, ImageDraw

from pipeline.work import Work

H, MAX_SHOTS = 36, 24
CHOSEN, OTHER, NONE = (40, 170, 60), (60, 110, 200), (170, 170, 170)


def shot_strip(work: Work) -> bytes | None:
    """PNG bytes, or None for sources without shots (image folders) or without any frames."""
    if work.source.kind != "video" or not work.shots or not work.frames:
        return None
    chosen = {id(f) for seq in work.sequences for f in seq.frames}
    in_process = {id(f) for seg in work.segments for f in seg.frames}
    group_of = {shot: n for n, g in enumerate(work.groups) for shot in g.shots}
    chosen_groups = {
        group_of[s]
        for s in work.shots
        if s in group_of and any(id(f) in chosen for f in work.frames[s[0] : s[1]])
    }
    tiles = []
    for a, b in work.shots[:MAX_SHOTS]:
        img = work.frames[(a + b - 1) // 2].image
        w = max(8, round(img.shape[1] * H / img.shape[0]))
        tile = np.full((H + 6, w + 6, 3), 255, np.uint8)
        if group_of.get((a, b)) in chosen_groups:
            tile[:] = CHOSEN
        else:
            tile[:] = OTHER if any(id(f) in in_process for f in work.frames[a:b]) else NONE
        tile[3:-3, 3:-3] = cv2.resize(img, (w, H), interpolation=cv2.INTER_AREA)
        tiles.append(tile)
    strip = Image.fromarray(np.hstack(tiles))
    if len(work.shots) > MAX_SHOTS:
        ImageDraw.Draw(strip).text(
            (strip.width - 60, 2), f"+{len(work.shots) - MAX_SHOTS} shots", fill="black"
        )
    buf = io.BytesIO()
    strip.save(buf, format="PNG")
    return buf.getvalue()
