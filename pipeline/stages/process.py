"""Find the process: keep shots where the work accumulates toward a final state.

Per run of shots (adjacent shots that continue one picture are merged first), frames are compared
with the run's final state on small thumbnails, only over the *work region* (pixels that differ
between the start and the end). A making process fills that region steadily: completion rises a
lot (gain) and monotonically (Spearman rho vs time). Title cards and finished holds are static;
talking heads, trailers and street cameras change without accumulating.
"""
from __future__ import annotations

import cv2
import numpy as np
from scipy.stats import spearmanr

from pipeline.config import ProcessConfig
from pipeline.work import Frame, Reject, Segment, Work

THUMB = 64


def thumb(img: np.ndarray) -> np.ndarray:
    """Small float RGB in [0, 1]; noise- and compression-tolerant."""
    h, w = img.shape[:2]
    return cv2.resize(img, (THUMB, max(2, round(h * THUMB / w))), interpolation=cv2.INTER_AREA).astype(np.float32) / 255


def _match(a: np.ndarray, b: np.ndarray, tol: float) -> np.ndarray:
    return np.abs(a - b).max(axis=-1) <= tol


def _state(thumbs: np.ndarray) -> np.ndarray:
    """Median of a few frames: the state without a hand that happens to pass."""
    return np.median(thumbs, axis=0)


def _ends(n: int) -> int:
    """How many frames at each end of a run make its start and final states."""
    return max(1, min(5, n // 5))


def work_region(thumbs: np.ndarray, tol: float) -> np.ndarray:
    """Pixels that differ between the start and the final state (medians of a few frames each)."""
    k = _ends(len(thumbs))
    return ~_match(_state(thumbs[:k]), _state(thumbs[-k:]), tol)


def completion_curve(thumbs: np.ndarray, region: np.ndarray, tol: float) -> np.ndarray:
    """Per-frame fraction of the work region that already matches the final state."""
    if not region.any():
        return np.ones(len(thumbs))
    final = _state(thumbs[-_ends(len(thumbs)):])
    diffs = np.abs(thumbs - final[None]).max(axis=-1) <= tol
    return diffs[:, region].mean(axis=1)


def work_box(region: np.ndarray, margin: float) -> list[float]:
    """(x0, y0, x1, y1) as fractions of the frame: where the work happens, from the 1st to the 99th
    percentile of the changed pixels (stray noise does not stretch it), plus a margin."""
    ys, xs = np.nonzero(region)
    h, w = region.shape
    x0, x1 = np.percentile(xs, [1, 99]) / w
    y0, y1 = np.percentile(ys, [1, 99]) / h
    return [round(float(max(0.0, x0 - margin)), 4), round(float(max(0.0, y0 - margin)), 4),
            round(float(min(1.0, x1 + 1 / w + margin)), 4), round(float(min(1.0, y1 + 1 / h + margin)), 4)]


def step_change(thumbs: np.ndarray, region: np.ndarray, tol: float) -> float:
    """Median fraction of the work region that changes between consecutive frames.

    A making process changes a small part of the work at a time; camera motion and live action
    (trailers, talking heads) change most of it at every step.
    """
    if len(thumbs) < 2 or not region.any():
        return 0.0
    changed = np.abs(np.diff(thumbs, axis=0)).max(axis=-1) > tol
    return float(np.median(changed[:, region].mean(axis=1)))


class FindProcess:
    name = "process"

    def __init__(self, cfg: ProcessConfig) -> None:
        self.cfg = cfg

    def _runs(self, work: Work, thumbs: np.ndarray) -> list[tuple[int, int]]:
        """Merge adjacent shots whose boundary frames show the same picture (a cut inside one process)."""
        runs: list[list[int]] = []
        for a, b in work.shots:
            if runs and _match(thumbs[runs[-1][1] - 1], thumbs[a], self.cfg.pixel_tolerance).mean() >= self.cfg.merge_similarity:
                runs[-1][1] = b
            else:
                runs.append([a, b])
        return [(a, b) for a, b in runs]

    def __call__(self, work: Work) -> Work:
        if work.source.kind == "images":  # a folder of step images is the process, in order
            self._score(work.frames, np.stack([thumb(f.image) for f in work.frames]))
            work.segments = [Segment(frames=list(work.frames))]
            return work
        thumbs = np.stack([thumb(f.image) for f in work.frames])
        rejected = []
        for a, b in self._runs(work, thumbs):
            frames = work.frames[a:b]
            seconds = frames[-1].time - frames[0].time
            where = f"{frames[0].time:.1f}-{frames[-1].time:.1f}s"
            if seconds < self.cfg.min_seconds:
                rejected.append(f"{where}: too short ({seconds:.1f}s)")
                continue
            tol = self.cfg.pixel_tolerance
            region = work_region(thumbs[a:b], tol)
            area = float(region.mean())
            curve = completion_curve(thumbs[a:b], region, tol)
            k = _ends(len(curve))
            gain = float(np.median(curve[-k:]) - np.median(curve[:k]))
            rho = float(spearmanr(np.arange(len(curve)), curve).statistic) if np.ptp(curve) > 0 else 0.0
            change = step_change(thumbs[a:b], region, tol)
            scores = {"gain": round(gain, 4), "monotonic": round(rho, 4), "area": round(area, 4),
                      "step_change": round(change, 4), "start": frames[0].time, "end": frames[-1].time}
            if area < 0.01 or gain < self.cfg.min_gain:
                rejected.append(f"{where}: static, nothing accumulates (gain {gain:.2f}, changed area {area:.1%})")
            elif change > self.cfg.max_step_change:
                rejected.append(f"{where}: everything moves at once ({change:.0%} of the view changes per step): "
                                "camera motion or live action, not work accumulating")
            elif rho < self.cfg.min_monotonic:
                rejected.append(f"{where}: changes without accumulating (rho {rho:.2f})")
            else:
                self._score(frames, thumbs[a:b], curve)
                if self.cfg.crop_to_work:
                    scores["crop"] = work_box(region, self.cfg.crop_margin)
                work.segments.append(Segment(frames=list(frames), scores=scores))
        work.notes.extend(f"shot {r}" for r in rejected)
        if not work.segments:
            raise Reject(f"no making process found in {len(work.shots)} shot(s): " + "; ".join(rejected))
        return work

    def _score(self, frames: list[Frame], thumbs: np.ndarray, curve: np.ndarray | None = None) -> None:
        """Store each frame's progress toward the finished state, normalised to [0, 1]."""
        if curve is None:
            tol = self.cfg.pixel_tolerance
            curve = completion_curve(thumbs, work_region(thumbs, tol), tol)
        lo, hi = float(curve.min()), float(curve.max())
        for f, c in zip(frames, curve):
            f.scores["completion"] = round(float(c), 4)
            f.scores["progress"] = round((float(c) - lo) / (hi - lo), 4) if hi > lo else 0.0
