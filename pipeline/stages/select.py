"""Order and select: N distinct states spread evenly over progress, the first an early stage, the last
the finished work, progress strictly rising step to step and every step different from the one before
by a share of the whole process's change, in the scale (or the edges) that sees the difference
(pipeline.footage.progress: so a hold is one state whatever its length, a passing hand or slight shake).
"""

from __future__ import annotations

from collections import Counter
from itertools import pairwise

import numpy as np

from pipeline.config import ProgressConfig, SelectConfig
from pipeline.footage.gates import Gate
from pipeline.footage.progress import measure
from pipeline.footage.transitions import FADE, aligned_blends
from pipeline.footage.views import view
from pipeline.stages.process import completion_curve, score_frames, work_box, work_region
from pipeline.work import Frame, Reject, Segment, Sequence, Work


def _allowed(progress: list[float], min_step: float, distinct: np.ndarray | None) -> np.ndarray:
    """allowed[i, j]: frame j may follow frame i as the next step."""
    p = np.asarray(progress, dtype=float)
    ok = (p[None, :] - p[:, None]) >= min_step
    ok &= np.triu(np.ones_like(ok), 1)
    return ok & distinct if distinct is not None else ok


def longest_chain(progress: list[float], min_step: float, distinct: np.ndarray | None = None) -> int:
    """How many steps the frames can give at most under the constraints of ``pick_steps``: the longest
    chain of rising, distinct frames from the first frame to the last (0 when none joins them)."""
    ok = _allowed(progress, min_step, distinct)
    m = len(progress)
    if m == 0:
        return 0
    best = np.full(m, -1)
    best[0] = 1
    for j in range(1, m):
        before = ok[:j, j] & (best[:j] > 0)
        if before.any():
            best[j] = 1 + best[:j][before].max()
    return int(max(best[-1], 1 if m == 1 else 0))


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


CLOSER = 4  # how much closer the second look at a segment is
TRANSIT, HELD = 2, 3  # analysis frames: a run this short between runs this long was passed through


def jitter(parts: np.ndarray) -> np.ndarray:
    """Per component, how much shake, compression and the registration's residue move it from one frame to
    the next while the work stays as it is (about the median first difference of pure noise): fine levels
    are the most sensitive (a third of a view pixel of shake moves the finest band by some percent of its
    whole change). Measured on second differences, which a steady rise of the work cancels, and on their
    lower quartile, which the jumps between held states (two large second differences each) leave alone
    even when a state holds for a few frames only. (On independent noise of spread s the lower quartile
    of |second difference| is 0.78 s; the median |first difference| 0.95 s.)"""
    if len(parts) < 4:
        return np.zeros(parts.shape[1])
    return np.percentile(np.abs(np.diff(parts, n=2, axis=0)), 25, axis=0) * (0.95 / 0.78)


def shares(parts: np.ndarray, noise: np.ndarray | None = None) -> np.ndarray:
    """out[i, j]: how much of the whole process's change lies between states i and j (rows of ``parts``,
    progress per scale and edges), in the component that changes most between them (coarse levels see a
    block-in, fine levels and edges the detail), beyond twice that component's frame-to-frame ``noise``."""
    d = np.abs(parts[None] - parts[:, None])
    if noise is not None:
        d = np.maximum(d - 2 * noise, 0.0)
    return d.max(axis=-1)


class Select:
    name = "select"

    def __init__(self, cfg: SelectConfig, progress: ProgressConfig, pixel_tolerance: float) -> None:
        self.cfg = cfg
        self.progress = progress
        self.tol = pixel_tolerance

    def states(
        self,
        parts: np.ndarray,
        noise: np.ndarray,
        drops: Counter,
        kind: str = "video",
        times: np.ndarray | None = None,
    ) -> list[int]:
        """Collapse runs of frames that differ from the run's first by less than half the share steps need
        into one state, represented by its steadiest frame (the least change to the frames on either side
        of it: a frame of a hold, not one in the middle of a fade between two states too alike to be told
        apart) and among those its most typical (closest to the run's median progress: not the start of a
        fade or a passing shadow); the last run by its very last frame (the finished work).
        Indices into ``parts``' rows; ``pick_steps`` then enforces the full share between chosen steps.
        Differences count beyond twice each component's ``noise`` (``jitter``), as in ``shares``. With the
        frames' ``times`` (footage), a short run passed through between two holds is no state
        (``_without_transitions``)."""
        runs: list[list[int]] = []
        for j in range(len(parts)):
            if (
                runs
                and (np.abs(parts[j] - parts[runs[-1][0]]) - 2 * noise).max() < self.progress.min_share / 2
            ):
                runs[-1].append(j)
            else:
                runs.append([j])
        if times is not None:
            runs = self._without_transitions(runs, parts, noise, times, drops)
        step = np.abs(np.diff(parts, axis=0)).max(axis=1) if len(parts) > 1 else np.zeros(0)
        change = np.maximum(np.append(step, 0.0), np.insert(step, 0, 0.0))  # to the frame before or after
        out = []
        for n, run in enumerate(runs):
            drops[self.same_state(kind)] += len(run) - 1
            if n == len(runs) - 1:
                out.append(run[-1])
                continue
            steady = [i for i in run if change[i] <= change[run].min() + 2 * noise.max()]
            typical = np.median(parts[run], axis=0)
            out.append(steady[int(np.argmin(np.abs(parts[steady] - typical).max(axis=1)))])
        share = shares(parts[out], noise)
        kept = self._rejoined(self._without_passing(share, drops), share, drops)
        return [out[i] for i in kept]

    @staticmethod
    def _without_transitions(
        runs: list[list[int]], parts: np.ndarray, noise: np.ndarray, times: np.ndarray, drops: Counter
    ) -> list[list[int]]:
        """The runs without those the footage only passes through between two states it holds: at most
        ``TRANSIT`` frames, part-way between held runs (``HELD`` frames or more) on both sides, with no
        frame left out between them (``times``: a run cut short by the frames quality dropped around it,
        a hand, a zoomed view, is a state seen briefly). Such a run is a fade, a piece being set down, a
        stroke caught mid-way; footage that never holds (continuous painting) keeps every state."""
        dt = float(np.median(np.diff(times))) if len(times) > 1 else 0.0
        out = runs[:1]
        for before, run, after in zip(runs, runs[1:], runs[2:]):
            through = times[after[0]] - times[before[-1]] <= (len(run) + 1.5) * dt
            if through and len(run) <= TRANSIT and len(before) >= HELD and len(after) >= HELD:
                a, b = np.median(parts[before], axis=0), np.median(parts[after], axis=0)
                lo, hi = np.minimum(a, b) - 2 * noise, np.maximum(a, b) + 2 * noise
                if ((parts[run] >= lo) & (parts[run] <= hi)).all():
                    drops["passed through between two held states (a fade, a piece being set down)"] += len(
                        run
                    )
                    continue
            out.append(run)
        return out + runs[-1:] if len(runs) > 1 else out

    def same_state(self, kind: str) -> str:
        """The drop reason of a frame that joins the state before it, with the measure that decided it (a
        folder step can change many pixels and still be under it once aligned and normalised)."""
        under = (
            f"under {self.progress.min_share / 2:.0%} of the whole change in every scale and in the edges "
            "(progress.min_share / 2)"
        )
        if kind == "images":
            return f"step image too close to the one before: {under}"
        return f"same state as the frame before (a hold): {under}"

    @staticmethod
    def _without_passing(share: np.ndarray, drops: Counter) -> list[int]:
        """Positions of the states to keep, without a state that the next one undoes (something came and
        went: a hand the occlusion test missed, a lamp switched on and off): work accumulates, so a state's
        neighbours differ from each other at least as much as from it. ``share`` compares the states."""
        n = len(share)
        if n < 3:
            return list(range(n))
        kept = [0]
        for b in range(1, n - 1):
            a, c = kept[-1], b + 1
            if share[a, c] < 0.5 * min(share[a, b], share[b, c]):
                drops["a passing state (it came and went)"] += 1
            else:
                kept.append(b)
        return kept + [n - 1]

    def _rejoined(self, kept: list[int], share: np.ndarray, drops: Counter) -> list[int]:
        """One state for the two sides of what passed: with it gone, the hold before a passing hand and the
        hold after it are alike, and the earlier stands for both (the finished work: its very end)."""
        out = kept[:1]
        for k in kept[1:]:
            if share[out[-1], k] < self.progress.min_share / 2:
                drops["same state as another frame (a hold)"] += 1
                if k == kept[-1]:
                    out[-1] = k
                continue
            out.append(k)
        return out

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
            gates: list[Gate] = []
            if (
                work.source.kind == "images" and len(seg.frames) == n
            ):  # exactly N steps: the sequence as given
                frames, chosen, gates = seg.frames, list(range(n)), [Gate("steps_given", n, n)]
            else:
                frames, chosen, gates = self._choose(seg, key, n, work)
                if (
                    chosen is None
                    and work.source.kind == "video"
                    and work.source.ordered
                    and seg.region is not None
                ):
                    # Late detail (the last strokes) may be too fine for the small whole-frame views.
                    frames, chosen, gates = self._choose(self._closer(seg, work), key, n, work)
            records = [g.record() for g in gates]
            if gates:
                work.gates.append({"where": _span(seg), "stage": "select", "gates": records})
            if chosen is None:
                problems.append(self._why(seg, gates, n, work.source.task.id))
                continue
            scores = {**seg.scores, "gates": (seg.scores.get("gates") or []) + records}
            work.sequences.append(
                Sequence(frames=[frames[i] for i in chosen], segment_scores=scores, size=seg.size)
            )
        if not work.sequences:
            raise Reject("not enough distinct steps: " + "; ".join(problems))
        return work

    def _why(self, seg: Segment, gates: list[Gate], n: int, task: str) -> str:
        """The count of distinct rising states, in words that agree with the decision."""
        found = int(gates[0].value)
        shots = seg.scores.get("shots") or 1
        where = f" across {shots} linked shots" if shots > 1 else ""
        what = (
            f"{found} distinct states found{where} (each rising in progress and differing from the one "
            f"before by at least {self.progress.min_share:.0%} of the whole change)"
        )
        if found >= n:  # a longer chain exists, but dropping states from it joins states too alike
            return f"{what}, but no {n} of them that keep every step that distinct; {task} needs {n}"
        return f"{what}; {task} needs {n}"

    def _choose(
        self, seg: Segment, key: str, n: int, work: Work
    ) -> tuple[list[Frame], list[int] | None, list[Gate]]:
        """The segment's states, the n of them chosen (None: impossible) and the gates measured: how many
        distinct rising states there are, and the least share between two chosen steps. The holds and
        passing states dropped are counted only when n were chosen."""
        drops: Counter = Counter()
        parts = (
            np.stack([f.parts for f in seg.frames])
            if seg.frames and all(f.parts is not None for f in seg.frames)
            else None
        )
        ordered = work.source.ordered and parts is not None
        noise = jitter(parts) if ordered else None
        times = np.array([f.time for f in seg.frames]) if work.source.kind == "video" else None
        idx = (
            self.states(parts, noise, drops, work.source.kind, times)
            if ordered
            else list(range(len(seg.frames)))
        )
        frames = [seg.frames[i] for i in idx]
        share = shares(parts[idx], noise) if ordered else None
        distinct = share >= self.progress.min_share if share is not None else None
        progress = [f.scores[key] for f in frames]
        chosen = pick_steps(progress, n, self.cfg.min_progress_step, distinct)
        found = longest_chain(progress, self.cfg.min_progress_step, distinct)
        gates = [Gate("distinct_states", found, n)]
        if chosen is None:
            return frames, None, gates
        if share is not None:
            least = min(share[a, b] for a, b in pairwise(chosen))
            gates.append(Gate("step_share", float(least), self.progress.min_share))
        work.drops.update(drops)
        return frames, chosen, gates

    def _closer(self, seg: Segment, work: Work) -> Segment:
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
        # Late refinement steps change too little at the whole-frame scale for the quality stage to see the
        # fades between them; seen closer, those mixes would be states of their own.
        clean = aligned_blends(views, self.progress.noise) <= FADE
        work.drops["cross-fade between two steps"] += int((~clean).sum())
        frames, views = [f for f, keep in zip(seg.frames, clean) if keep], views[clean]
        region = work_region(views, self.tol)
        curve, visible = completion_curve(views, region, self.tol)
        for f, v in zip(frames, views):
            f.view = v
        score_frames(
            frames, curve, measure(views, self.progress.noise, self.progress.coarsest).components, visible
        )
        return Segment(frames=frames, scores=seg.scores, region=region, size=seg.size)


def _span(seg: Segment) -> str:
    """Where the segment is, for the report's gates."""
    start, end = seg.scores.get("start"), seg.scores.get("end")
    return f"{start:.1f}-{end:.1f}s" if start is not None and end is not None else "images"
