"""Adjacent-frame statistics: is the sequence smooth, does it stall (duplicates) or leap (jumps)?"""

from __future__ import annotations

import numpy as np


def coherence(sim: np.ndarray, duplicate_distance: float, jump_fraction: float) -> dict:
    """Statistics of the adjacent distances d_i = 1 - sim(f_i, f_i+1).

    A duplicate is d_i <= duplicate_distance; a jump is one step carrying more than
    `jump_fraction` of the total change sum(d), which makes jumps independent of the backbone's scale.
    `step_cv` (std/mean of d) is 0 when every step changes the picture equally.
    """
    adjacent = np.diag(sim, k=1).astype(float)
    d = np.clip(1.0 - adjacent, 0.0, None)
    total = d.sum()
    return {
        "smoothness": float(adjacent.mean()),
        "min_similarity": float(adjacent.min()),
        "step_cv": float(d.std() / d.mean()) if d.mean() > 0 else None,
        "duplicate_rate": float(np.mean(d <= duplicate_distance)),
        "jump_rate": float(np.mean(d > jump_fraction * total)) if total > 0 else 0.0,
    }
