"""Order and select: N frames spread evenly over progress, the first an early stage, the last the
finished work, progress strictly rising step to step (so no two steps alike)."""
from __future__ import annotations

import numpy as np

from pipeline.config import SelectConfig
from pipeline.work import Frame, Reject, Sequence, Work


def pick_steps(progress: list[float], n: int, min_step: float) -> list[int] | None:
    """Indices (rising) of n frames whose progress best follows 0, 1/(n-1), ..., 1; None if impossible.

    Dynamic programming over (step, frame): minimise the squared distance to the targets under the
    constraints first frame = index 0, last = the final index, progress rising by >= min_step.
    """
    m = len(progress)
    if m < n:
        return None
    p = np.asarray(progress, dtype=float)
    targets = np.linspace(p[0], p[-1], n)
    inf = float("inf")
    cost = np.full((n, m), inf)
    back = np.zeros((n, m), dtype=int)
    cost[0, 0] = 0.0
    for k in range(1, n):
        for j in range(k, m - (n - 1 - k)):
            if k == n - 1 and j != m - 1:
                continue
            ok = [(cost[k - 1, i], i) for i in range(k - 1, j) if cost[k - 1, i] < inf and p[j] - p[i] >= min_step]
            if ok:
                c, i = min(ok)
                cost[k, j], back[k, j] = c + (p[j] - targets[k]) ** 2, i
    if cost[n - 1, m - 1] == inf:
        return None
    out, j = [m - 1], m - 1
    for k in range(n - 1, 0, -1):
        j = back[k, j]
        out.append(int(j))
    return out[::-1]


class Select:
    name = "select"

    def __init__(self, cfg: SelectConfig) -> None:
        self.cfg = cfg

    def __call__(self, work: Work) -> Work:
        n = work.source.task.frames
        # Unordered folders are put in progress order by the CLIP stage; pixel progress assumes file order.
        key = "progress" if work.source.ordered else "clip_progress"
        if not work.source.ordered and not any(key in f.scores for s in work.segments for f in s.frames):
            raise Reject("an unordered folder (ordered: false) needs the CLIP stage to order its steps, "
                         "and CLIP did not run (see the report's CLIP line)")
        ranked = sorted(work.segments, key=lambda s: -s.scores.get("gain", 0.0))[: self.cfg.sequences_per_source]
        problems = []
        for seg in sorted(ranked, key=lambda s: s.scores.get("start", 0.0)):
            frames: list[Frame] = seg.frames
            if work.source.kind == "images" and len(frames) == n:
                chosen = list(range(n))  # a folder of exactly N steps is the sequence as given
            else:
                chosen = pick_steps([f.scores[key] for f in frames], n, self.cfg.min_progress_step)
            if chosen is None:
                problems.append(f"{len(frames)} usable frames cannot give {n} distinct rising steps")
                continue
            work.sequences.append(Sequence(frames=[frames[i] for i in chosen], segment_scores=seg.scores))
        if not work.sequences:
            raise Reject("not enough distinct steps: " + "; ".join(problems))
        return work
