"""Bootstrap 95% intervals; averages over tasks resample within each task (stratified), as the
paper's averages are means of per-task means."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def bootstrap_mean(groups: Sequence[Sequence[float]], n: int = 1000, seed: int = 0) -> dict | None:
    """Mean of group means with a percentile 95% interval; None when there is no value at all."""
    arrays = [np.asarray(g, dtype=float) for g in groups if len(g)]
    if not arrays:
        return None
    rng = np.random.default_rng(seed)
    boot = np.mean([a[rng.integers(0, len(a), size=(n, len(a)))].mean(axis=1) for a in arrays], axis=0)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return {
        "mean": float(np.mean([a.mean() for a in arrays])),
        "lo": float(lo),
        "hi": float(hi),
        "n": int(sum(len(a) for a in arrays)),
    }
