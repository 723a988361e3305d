"""Order and select: N distinct states spread evenly over progress, the first an early stage, the last
the finished work, progress strictly rising step to step and every step visibly different from the
one before (measured on aligned, normalised views, so a hold is one state whatever its length)."""

from __future__ import annotations

from collections import Counter

import numpy as np

from pipeline.config import SelectConfig
from pipeline.footage.views import half_pixel_envelope, nan_median, outside, view
from pipeline.stages.process import completion_curve, departure_curve, score_frames, work_box, work_region
from pipeline.work import Frame, Reject, Segment, Sequence, Work


def _allowed(progress: list[float], min_step: float, distinct: np.ndarray | None) -> np.ndarray:
    """allowed[i, j]: frame j may follow frame i as the next step."""
    p = np.asarray(progress, dtype=float)
    ok = (p[None, :] - p[:, None]) >= min_step
    ok &= np.triu(np.ones_like(ok), 1)
    return ok & distinct if distinct is not None else ok


def longest_chain(progress: list[float], min_step: float, distinct: np.ndarray | None = None) -> int:
    """How many steps the frames can give at most: the longest chain of rising, distinct frames."""
    ok = _allowed(progress, min_step, distinct)
    best = np.ones(len(progress), dtype=int)
    for j in range(len(progress)):
        if ok[:j, j].any():
            best[j] = 1 + best[:j][ok[:j, j]].max()
    return int(best.max(initial=0))


def pick_steps(
    progress: list[float], n: int, min_step: float, distinct: np.ndarray | None = None
) -> list[int] | None:
    """Indices (rising) of n frames whose progress best follows 0, 1/(n-1), ..., 1; None if impossible.

    Dynamic programming over (step, frame): minimise the squared distance to the targets under the
    constraints first frame = index 0, last = the final index, progress rising by >= min_step and,
    when ``distinct`` (m x m booleans) is given, each step visibly different from the one before.
    """
    m = len(progress)
    if m < n:
        return None
    p = np.asarray(progress, dtype=float)
    ok_pair = _allowed(progress, min_step, distinct)
    targets = np.linspace(p[0], p[-1], n)
    inf = float("inf")
    cost = np.full((n, m), inf)
    back = np.zeros((n, m), dtype=int)
    cost[0, 0] = 0.0
    for k in range(1, n):
        for j in range(k, m - (n - 1 - k)):
            if k == n - 1 and j != m - 1:
                continue
            prev = np.where(ok_pair[:j, j], cost[k - 1, :j], inf)
            i = int(np.argmin(prev))
            if prev[i] < inf:
                cost[k, j], back[k, j] = prev[i] + (p[j] - targets[k]) ** 2, i
    if cost[n - 1, m - 1] == inf:
        return None
    out, j = [m - 1], m - 1
    for k in range(n - 1, 0, -1):
        j = back[k, j]
        out.append(int(j))
    return out[::-1]


BAND = 12  # states compared with each state's followers for distinct steps
CLOSER = 4  # how much closer the second look at a segment is


class Differences:
    """Fractions of the work region (seen in both views) where frames differ by more than half a pixel's
    shift explains: the views are aligned already, to a pixel or better, and late detail (the last
    strokes of a painting) is finer than the one-pixel tolerance the process test allows itself. Only
    the work region's pixels are kept, once, for a whole step matrix."""

    def __init__(self, frames: list[Frame], region: np.ndarray | None, tol: float) -> None:
        self.n = len(frames)
        self.usable = bool(frames) and all(
            f.view is not None and f.view.shape == frames[0].view.shape for f in frames
        )
        if not self.usable:
            return
        self.tol = tol
        self.region = (
            region if region is not None and region.any() else np.ones(frames[0].view.shape[:2], bool)
        )
        self.views, self.lo, self.hi = half_pixel_envelope(np.stack([f.view for f in frames]), self.region)
        self.seen = np.isfinite(self.views[..., 0])

    def against(self, view: np.ndarray, idx: np.ndarray | slice) -> np.ndarray:
        """How much ``view`` (a full view) differs from each of the frames ``idx``."""
        if not self.usable:
            return np.ones(len(range(self.n)[idx]))
        return self._against(view[self.region], idx)

    def _against(self, px: np.ndarray, idx: np.ndarray | slice) -> np.ndarray:
        both = np.isfinite(px[:, 0])[None] & self.seen[idx]
        changed = outside(px[None], (self.lo[idx], self.hi[idx]), self.tol) & both
        return changed.sum(axis=1) / np.maximum(both.sum(axis=1), 1)

    def pair(self, i: int, j: int) -> float:
        return float(self._against(self.views[i], slice(j, j + 1))[0]) if self.usable else 1.0

    def subset(self, idx: list[int]) -> Differences:
        """The same comparisons for the frames ``idx`` only (nothing is computed again)."""
        sub = object.__new__(Differences)
        sub.n, sub.usable = len(idx), self.usable
        if self.usable:
            sub.tol, sub.region = self.tol, self.region
            sub.views, sub.lo, sub.hi, sub.seen = (a[idx] for a in (self.views, self.lo, self.hi, self.seen))
        return sub

    def matrix(self, band: int = BAND) -> np.ndarray:
        """out[i, j]: how much frames i and j differ, for the ``band`` states after each; further apart
        the work has accumulated (passing states are gone), so they count as fully different."""
        out = np.ones((self.n, self.n))
        if self.usable:
            for i in range(self.n):
                near = slice(i + 1, min(self.n, i + 1 + band))
                out[i, near] = self._against(self.views[i], near)
        return out


class Select:
    name = "select"

    def __init__(self, cfg: SelectConfig, pixel_tolerance: float) -> None:
        self.cfg = cfg
        self.tol = pixel_tolerance

    def states(self, seg: Segment, diff: Differences, drops: Counter, kind: str = "video") -> list[int]:
        """Collapse runs of frames that look like the run's first into one state, represented by its most
        typical frame (closest to the run's median view: not the start of a fade or a passing shadow).
        Indices into ``seg.frames``; ``diff`` compares them.

        Runs are cut at half the distinctness that steps need, so that states a step apart in the work
        stay apart here; ``pick_steps`` then enforces the full distinctness between chosen steps."""
        runs: list[list[int]] = []
        for j in range(len(seg.frames)):
            if runs and diff.pair(runs[-1][0], j) < self.cfg.min_distinct / 2:
                runs[-1].append(j)
            else:
                runs.append([j])
        out = []
        for n, run in enumerate(runs):
            drops[self.same_state(kind)] += len(run) - 1
            if n == len(runs) - 1 or len(run) < 3 or not diff.usable:  # the finished work: its very end
                out.append(run[-1])
                continue
            typical = nan_median(np.stack([seg.frames[j].view for j in run]))
            out.append(run[int(np.argmin(diff.against(typical, np.array(run))))])
        return self._without_passing(out, diff, drops)

    def same_state(self, kind: str) -> str:
        """The drop reason of a frame that joins the state before it, with the measure that decided it (a
        folder step can change many pixels and still be under it once aligned and normalised)."""
        under = f"under {self.cfg.min_distinct / 2:.0%} of the work region visibly differs (select.min_distinct / 2)"
        if kind == "images":
            return f"step image too close to the one before: {under}"
        return f"same state as the frame before (a hold): {under}"

    @staticmethod
    def _without_passing(states: list[int], diff: Differences, drops: Counter) -> list[int]:
        """Drop a state that the next one undoes (something came and went: a hand the occlusion test
        missed, a lamp switched on and off): work accumulates, so a state's neighbours differ from each
        other at least as much as from it."""
        if len(states) < 3:
            return states
        kept = [states[0]]
        for b, c in zip(states[1:-1], states[2:]):
            a = kept[-1]
            if diff.pair(a, c) < 0.5 * min(diff.pair(a, b), diff.pair(b, c)):
                drops["a passing state (it came and went)"] += 1
            else:
                kept.append(b)
        return kept + [states[-1]]

    def __call__(self, work: Work) -> Work:
        n = work.source.task.frames
        # Unordered folders are put in progress order by the CLIP stage; pixel progress assumes file order.
        key = "progress" if work.source.ordered else "clip_progress"
        if not work.source.ordered and not any(key in f.scores for s in work.segments for f in s.frames):
            raise Reject(
                "an unordered folder (ordered: false) needs the CLIP stage to order its steps, "
                "and CLIP did not run (see the report's CLIP line)"
            )
        # The most work first: how much completion rose times how much of the view it covers.
        ranked = sorted(work.segments, key=lambda s: -s.scores.get("gain", 1.0) * s.scores.get("area", 1.0))
        ranked = ranked[: self.cfg.sequences_per_source]
        problems = []
        for seg in sorted(ranked, key=lambda s: s.scores.get("start") or 0.0):
            if (
                work.source.kind == "images" and len(seg.frames) == n
            ):  # exactly N steps: the sequence as given
                frames, chosen = seg.frames, list(range(n))
            else:
                frames, chosen, found = self._choose(seg, key, n, work)
                if (
                    chosen is None
                    and work.source.kind == "video"
                    and work.source.ordered
                    and seg.region is not None
                ):
                    # Late detail (the last strokes) may be too fine for the small whole-frame views.
                    frames, chosen, found = self._choose(self._closer(seg), key, n, work)
            if chosen is None:
                shots = seg.scores.get("shots") or 1
                where = f" across {shots} linked shots" if shots > 1 else ""
                problems.append(
                    f"{found} distinct states found{where} (visibly different and rising in "
                    f"completion); {work.source.task.id} needs {n}"
                )
                continue
            work.sequences.append(
                Sequence(frames=[frames[i] for i in chosen], segment_scores=seg.scores, size=seg.size)
            )
        if not work.sequences:
            raise Reject("not enough distinct steps: " + "; ".join(problems))
        return work

    def _choose(
        self, seg: Segment, key: str, n: int, work: Work
    ) -> tuple[list[Frame], list[int] | None, int]:
        """The segment's states, the n of them chosen (None: impossible) and how many distinct rising
        states there are; the holds and passing states dropped are counted only when n were chosen."""
        drops: Counter = Counter()
        diff = Differences(seg.frames, seg.region, self.tol)
        idx = (
            self.states(seg, diff, drops, work.source.kind)
            if work.source.ordered
            else list(range(len(seg.frames)))
        )
        frames = [seg.frames[i] for i in idx]
        distinct = diff.subset(idx).matrix() >= self.cfg.min_distinct
        progress = [f.scores[key] for f in frames]
        chosen = pick_steps(progress, n, self.cfg.min_progress_step, distinct)
        if chosen is None:
            return (
                frames,
                None,
                longest_chain(progress, self.cfg.min_progress_step, distinct) if frames else 0,
            )
        work.drops.update(drops)
        return frames, chosen, len(chosen)

    def _closer(self, seg: Segment) -> Segment:
        """The segment seen closer: views of the work's box only, CLOSER times as many pixels across (at most
        the frame's own), and each frame's progress measured again on them."""
        box = seg.scores.get("crop") or work_box(seg.region, 0.0)
        rw = seg.size[0]
        across = max(
            2, round(min(CLOSER * (box[2] - box[0]) * seg.frames[0].view.shape[1], (box[2] - box[0]) * rw))
        )
        views = np.stack(
            [view(f, seg.size, box, across) * (f.gain if f.gain is not None else 1.0) for f in seg.frames]
        )
        region = work_region(views, self.tol)
        curve, visible = completion_curve(views, region, self.tol)
        for f, v in zip(seg.frames, views):
            f.view = v
        score_frames(seg.frames, curve, departure_curve(views, region, self.tol), visible)
        return Segment(frames=seg.frames, scores=seg.scores, region=region, size=seg.size)
