"""Drawings for the demo: a few SVGs written for it (an emoji with gradients, a clipped and `use`-heavy
icon) and QuickDraw-style stroke drawings (one timed, one not), to show the svg and strokes source kinds."""

from __future__ import annotations

import json
import math
from pathlib import Path

from pipeline.io.atomic import write_text

SVG = '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" viewBox="0 0 36 36">{}</svg>'

SMILEY = SVG.format("""<defs>
  <radialGradient id="face" cx="0.4" cy="0.35" r="0.7"><stop offset="0" stop-color="#FFE46B"/>
    <stop offset="1" stop-color="#F4A93A"/></radialGradient>
  <linearGradient id="tongue" x1="0" y1="0" x2="0" y2="1"><stop offset="0" stop-color="#F77"/>
    <stop offset="1" stop-color="#C33"/></linearGradient>
  <ellipse id="eye" rx="2.4" ry="3.4" fill="#5A3A0A"/>
  <clipPath id="mouth"><path d="M8 20c2 8 18 8 20 0z"/></clipPath>
</defs>
<circle cx="18" cy="18" r="17" fill="url(#face)"/>
<use href="#eye" x="12" y="13.5"/>
<use href="#eye" x="24" y="13.5"/>
<path d="M8 20c2 8 18 8 20 0z" fill="#5A3A0A"/>
<g clip-path="url(#mouth)"><rect x="8" y="20" width="20" height="3" fill="#FFF"/>
  <circle cx="18" cy="29" r="5" fill="url(#tongue)"/></g>
<g opacity="0.5" fill="#FF7F6E"><circle cx="7.5" cy="20" r="2.6"/><circle cx="28.5" cy="20" r="2.6"/></g>""")

CAT = SVG.format("""<path d="M5 4l8 6H7zM31 4l-8 6h6z" fill="#E08A2E"/>
<circle cx="18" cy="20" r="14" fill="#F5A742"/>
<path d="M11 14a3 3 0 1 1 0 .1zm14 0a3 3 0 1 1 0 .1z" fill="#2F2A25"/>
<path d="M16 21h4l-2 2.5z" fill="#E0607E"/>
<path d="M18 23.5q-2 3-5 2m5-2q2 3 5 2" fill="none" stroke="#2F2A25" stroke-width="1" stroke-linecap="round"/>
<path d="M3 21l8 1M3 25l8-1M33 21l-8 1M33 25l-8-1" stroke="#2F2A25" stroke-width="0.8" stroke-linecap="round"/>""")

HOUSE = SVG.format("""<defs>
  <linearGradient id="sky" x1="0" y1="0" x2="0" y2="1"><stop offset="0" stop-color="#8FD3FF"/>
    <stop offset="1" stop-color="#E8F7FF"/></linearGradient>
  <clipPath id="tile"><rect x="1" y="1" width="34" height="34" rx="7"/></clipPath>
  <path id="cloud" d="M0 3a3 3 0 0 1 5-2a3.5 3.5 0 0 1 6 1a2.5 2.5 0 0 1 0 4H1a2 2 0 0 1-1-3z" fill="#FFF"/>
</defs>
<g clip-path="url(#tile)">
  <rect width="36" height="36" fill="url(#sky)"/>
  <circle cx="28" cy="8" r="4" fill="#FFC83D"/>
  <use href="#cloud" x="3" y="4"/>
  <rect y="27" width="36" height="9" fill="#6CC04A"/>
</g>
<rect x="9" y="17" width="16" height="12" fill="#F2E2C4"/>
<path d="M7 18L17 9l10 9z" fill="#C8453B"/>
<rect x="21" y="10" width="3" height="5" fill="#8A5A44"/>
<rect x="15" y="21" width="4" height="8" rx="1" fill="#7A4B2A"/>
<rect x="10.5" y="20" width="3.5" height="3.5" fill="#5DADEC" stroke="#FFF" stroke-width="0.6"/>
<rect x="20" y="20" width="3.5" height="3.5" fill="#5DADEC" stroke="#FFF" stroke-width="0.6"/>
<g transform="translate(30 24)"><rect x="-0.6" y="0" width="1.2" height="5" fill="#7A4B2A"/>
  <circle r="3" fill="#3E8E3A"/></g>""")

SVGS = [
    ("smiley.svg", SMILEY, "emoji", None),
    ("cat_face.svg", CAT, "emoji", "a cat face"),
    ("house.svg", HOUSE, "icon", "a house on a sunny day"),
]


def _sun(t0: int = 0) -> list[list[list[int]]]:
    """A circle then eight rays, with times (ms): the raw QuickDraw variant."""
    strokes, t = [], t0
    ring = [(60 + 30 * math.cos(a * math.pi / 12), 60 + 30 * math.sin(a * math.pi / 12)) for a in range(25)]
    strokes.append(
        [[round(x) for x, _ in ring], [round(y) for _, y in ring], [t + 40 * i for i in range(25)]]
    )
    t += 25 * 40 + 300
    for k in range(8):
        a = k * math.pi / 4
        strokes.append(
            [
                [round(60 + 38 * math.cos(a)), round(60 + 55 * math.cos(a))],
                [round(60 + 38 * math.sin(a)), round(60 + 55 * math.sin(a))],
                [t, t + 120],
            ]
        )
        t += 420
    return strokes


def _house() -> list[list[list[int]]]:
    """Ten strokes without times (the simplified variant): walls, roof, door, window, path."""
    lines = [
        ((20, 120), (20, 60)),
        ((20, 60), (120, 60)),
        ((120, 60), (120, 120)),
        ((20, 120), (120, 120)),
        ((10, 65), (70, 15)),
        ((70, 15), (130, 65)),
        ((60, 120), (60, 90), (80, 90), (80, 120)),
        ((35, 75), (50, 75), (50, 90), (35, 90), (35, 75)),
        ((95, 75), (105, 75), (105, 85), (95, 85), (95, 75)),
        ((70, 120), (60, 140), (75, 155)),
    ]
    return [[[p[0] for p in line], [p[1] for p in line]] for line in lines]


def write_vector_demo(folder: Path) -> list[dict]:
    """Write the demo drawings into ``folder``; returns their manifest entries (paths relative to its parent)."""
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for name, text, task, subject in SVGS:
        write_text(folder / name, text)
        entries.append(
            {
                "svg": f"{folder.name}/{name}",
                "task": task,
                "license": "CC0-1.0",
                "attribution": "makeanything demo",
                **({"subject": subject} if subject else {}),
            }
        )
    drawings = [{"word": "sun", "drawing": _sun()}, {"word": "house", "drawing": _house()}]
    write_text(folder / "sketches.ndjson", "".join(json.dumps(d) + "\n" for d in drawings))
    entries.append(
        {
            "strokes": f"{folder.name}/sketches.ndjson",
            "task": "sketch",
            "license": "CC0-1.0",
            "attribution": "makeanything demo",
        }
    )
    return entries
