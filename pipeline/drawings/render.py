"""The SVG renderer: resvg (a maintained Rust renderer, shipped as the resvg-py wheel: no system library).

System fonts are never scanned (that costs more than rendering an emoji); text is set in the DejaVu Sans
that matplotlib ships, so text renders the same on every machine. Nothing is fetched: documents reach the
renderer only after :mod:`pipeline.drawings.svg` has refused every external reference.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import resvg_py


@lru_cache(maxsize=1)
def font_files() -> tuple[str, ...]:
    import matplotlib

    fonts = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    return tuple(str(p) for p in sorted(fonts.glob("DejaVuSans*.ttf")))


def render(svg: str, text: bool = False) -> np.ndarray:
    """RGB uint8 pixels of ``svg`` (at the width/height its root declares) on white.

    ``text``: the document holds text, so load the bundled fonts (skipped otherwise: it is the slow part).
    """
    png = resvg_py.svg_to_bytes(
        svg_string=svg,
        background="#ffffff",
        skip_system_fonts=True,
        font_files=list(font_files()) if text else None,
        font_family="DejaVu Sans",
        sans_serif_family="DejaVu Sans",
        serif_family="DejaVu Sans",
        monospace_family="DejaVu Sans Mono",
    )
    # resvg_py returns only PNG; read as it is (RGBA, opaque on the background): cheaper than IMREAD_COLOR
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGRA2RGB)
