"""Does each step bring the picture closer to the final one, and does detail build up?

Distance to the final frame cannot tell a process from its reverse (a cross-fade is monotone both
ways), so `detail_trend` adds the direction: rank correlation of step with image detail (mean
gradient magnitude), +1 when detail only grows, -1 when a finished picture is erased.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from evaluation.metrics.ranks import spearman


def progress(sim: np.ndarray, tolerance: float) -> dict:
    """From the similarity matrix: d_i = 1 - sim(f_i, f_N).

    spearman: rank correlation of step index with closeness to the final frame (1 = monotone).
    backtrack_rate: share of steps that move away from the final frame by more than `tolerance`.
    curve: 1 - d_i / d_1, from 0 at the first frame to 1 at the last (None when d_1 = 0).
    """
    d = np.clip(1.0 - sim[:, -1].astype(float), 0.0, None)
    d[-1] = 0.0
    steps = np.arange(len(d))
    return {
        "spearman": spearman(steps, -d),
        "backtrack_rate": float(np.mean(np.diff(d) > tolerance)),
        "curve": [float(v) for v in 1.0 - d / d[0]] if d[0] > 0 else None,
    }


LUMA = np.array([0.299, 0.587, 0.114])


def detail(img: Image.Image) -> float:
    """Mean absolute gradient of the luma at native size, in float (0 on a blank canvas)."""
    g = np.asarray(img.convert("RGB"), dtype=np.float64) @ LUMA / 255.0
    return float(np.abs(np.diff(g, axis=0)).mean() + np.abs(np.diff(g, axis=1)).mean())


def detail_trend(frames: Sequence[Image.Image]) -> float | None:
    levels = np.array([detail(f) for f in frames])
    return spearman(np.arange(len(levels)), levels)
