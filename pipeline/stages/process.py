"""Find the process: keep groups of shots where the work accumulates toward a final state.

Per group (shots linked by registration, pipeline.stages.align), frames are compared with the group's
start and final states on small aligned, photometrically normalised views (pipeline.footage.views). The
*work region* (pixels that differ between the start and the end) says where the work is; progress
(pipeline.footage.progress: how far along the way from start to final each frame is, at several scales
and in its edges) says how far it has come. A making process changes the work region a lot (gain), a
little at a time (step change), rises steadily (Spearman rho of progress vs time), over time rather than
at once (spread), and settles on its final state. Title cards and finished holds are static; talking
heads, trailers and street cameras change without accumulating; a drifting camera does not settle.
"""

from __future__ import annotations

import numpy as np

from pipeline.config import ProcessConfig, ProgressConfig
from pipeline.footage.gates import Gate, first_failed
from pipeline.footage.progress import ends as _ends
from pipeline.footage.progress import measure
from pipeline.footage.transitions import fade_only
from pipeline.footage.views import differs, envelope, nan_median, normalised_views, outside
from pipeline.work import Frame, Group, Reject, Segment, Work

MIN_AREA = 0.01  # a process changes at least this share of the view


def _state(views: np.ndarray) -> np.ndarray:
    """Median of a few views: the state without a hand that happens to pass (NaN where none sees)."""
    return nan_median(views)


def work_region(views: np.ndarray, tol: float) -> np.ndarray:
    """Pixels that differ between the start and the final state (medians of a few frames each)."""
    k = _ends(len(views))
    return differs(_state(views[:k]), _state(views[-k:]), tol)


def _unlike(views: np.ndarray, state: np.ndarray, region: np.ndarray, tol: float) -> np.ndarray:
    """Per frame: the fraction of the work region it sees that differs from ``state``."""
    px = views[:, region]
    lo, hi = envelope(state)
    shown = np.isfinite(px[..., 0]).sum(axis=1)
    unlike = outside(px, (lo[region], hi[region]), tol).sum(axis=1)  # never true off view
    return unlike / np.maximum(shown, 1)


def shown_core(views: np.ndarray, region: np.ndarray) -> np.ndarray:
    """The part of the work region that at least half the frames see: all of it when the camera shows
    the whole work, the middle of the work when re-framed shots each show a part of it (a board filling
    the frame, filmed at several zooms). Steps are judged, and cropped, on what they have in common."""
    seen = np.isfinite(views[..., 0]).mean(axis=0) >= 0.5
    core = region & seen
    return core if core.any() else region


def completion_curve(views: np.ndarray, region: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: the fraction of the seen work region that already matches the final state, and the
    fraction of the region's shown core (``shown_core``) the frame sees."""
    if not region.any():
        return np.ones(len(views)), np.ones(len(views))
    unlike = _unlike(views, _state(views[-_ends(len(views)) :]), region, tol)
    core = shown_core(views, region)
    return 1 - unlike, np.isfinite(views[:, core, 0]).sum(axis=1) / core.sum()


def work_box(region: np.ndarray, margin: float) -> list[float]:
    """(x0, y0, x1, y1) as fractions of the view: where the work happens, from the 1st to the 99th
    percentile of the changed pixels (stray noise does not stretch it), plus a margin."""
    ys, xs = np.nonzero(region)
    h, w = region.shape
    x0, x1 = np.percentile(xs, [1, 99]) / w
    y0, y1 = np.percentile(ys, [1, 99]) / h
    return [
        round(float(max(0.0, x0 - margin)), 4),
        round(float(max(0.0, y0 - margin)), 4),
        round(float(min(1.0, x1 + 1 / w + margin)), 4),
        round(float(min(1.0, y1 + 1 / h + margin)), 4),
    ]


def step_change(views: np.ndarray, region: np.ndarray, tol: float) -> float:
    """Median fraction of the work region that changes between consecutive frames.

    A making process changes a small part of the work at a time; live action (trailers, talking heads)
    and motion the registration could not undo change most of it at every step.
    """
    if len(views) < 2 or not region.any():
        return 0.0
    lo, hi = envelope(views[:-1])
    changed = outside(views[1:, region], (lo[:, region], hi[:, region]), tol)
    both = np.isfinite(views[1:, region, 0]) & np.isfinite(views[:-1, region, 0])
    return float(np.median(changed.sum(axis=1) / np.maximum(both.sum(axis=1), 1)))


def spread(curve: np.ndarray, times: np.ndarray) -> float:
    """Share of the time before the work is (nearly) finished during which it is in progress: from
    20% to 80% of the progress curve's range, over the time from the start to the 80% mark.

    Work accumulates through a process; a change that happens all at once at the end of a long shot
    (a hand entering, a light switched on) does not. On the continuous progress, a picture refined over
    its whole surface is in progress from the block-in to the last pass.
    """
    lo, hi = float(curve.min()), float(curve.max())
    if hi <= lo:
        return 0.0
    p = (curve - lo) / (hi - lo)
    t20, t80 = times[np.argmax(p >= 0.2)], times[np.argmax(p >= 0.8)]
    return float((t80 - t20) / (t80 - times[0])) if t80 > times[0] else 0.0


def smoothed(curve: np.ndarray) -> np.ndarray:
    """The progress curve with single-frame excursions (a hand, a flash) taken out: a running median of 3."""
    if len(curve) < 3:
        return curve
    edged = np.pad(curve, 1, mode="edge")
    return np.median(np.stack([edged[:-2], edged[1:-1], edged[2:]]), axis=0).astype(curve.dtype, copy=False)


def rising(curve: np.ndarray) -> float:
    """Spearman's rank correlation of the curve with time (ties take their mean rank), 0 for a flat curve.
    In numpy: scipy.stats costs a second of start-up in every process that imports the stages."""
    if len(curve) < 2 or np.ptp(curve) == 0:
        return 0.0
    _, tie, count = np.unique(curve, return_inverse=True, return_counts=True)
    first = np.concatenate([[0], np.cumsum(count)[:-1]])
    ranks = (first + (count - 1) / 2)[tie]  # mean rank of each run of ties
    return float(np.corrcoef(np.arange(len(curve)), ranks)[0, 1])


def _where(group: Group, frames: list[Frame]) -> str:
    a, b = group.shots[0][0], group.shots[-1][1] - 1
    if frames[a].time is None:
        return f"images {a + 1}-{b + 1}"
    span = f"{frames[a].time:.1f}-{frames[b].time:.1f}s"
    return span if len(group.shots) == 1 else f"{span} ({len(group.shots)} linked shots)"


def score_frames(frames: list[Frame], curve: np.ndarray, parts: np.ndarray, visible: np.ndarray) -> None:
    """Store each frame's completion, its progress (normalised to [0, 1] over the segment) and the parts of
    its progress (``Frame.parts``: per scale and edges, the share of that component's whole change)."""
    progress = parts.mean(axis=1)
    lo, hi = float(progress.min()), float(progress.max())
    for f, c, p, row, v in zip(frames, curve, progress, parts, visible):
        f.scores["completion"] = round(float(c), 4)
        f.scores["progress"] = round((float(p) - lo) / (hi - lo), 4) if hi > lo else 0.0
        f.scores["visible"] = round(float(v), 4)
        f.parts = row


class FindProcess:
    name = "process"

    def __init__(self, cfg: ProcessConfig, progress: ProgressConfig) -> None:
        self.cfg = cfg
        self.progress = progress

    def __call__(self, work: Work) -> Work:
        rejected = []
        for group in work.groups or [Group(shots=[(0, len(work.frames))], reference=len(work.frames) - 1)]:
            problem = self._group(work, group)
            if problem:
                rejected.append(f"{_where(group, work.frames)}: {problem}")
        work.notes.extend(f"shot {r}" for r in rejected)
        if not work.segments:
            raise Reject(f"no making process found in {len(work.shots)} shot(s): " + "; ".join(rejected))
        return work

    def _group(self, work: Work, group: Group) -> str:
        """Add the group as a segment, or say why it is not a making process (the failed test's value and
        threshold in the words; every test measured goes to ``work.gates``)."""
        frames = [work.frames[i] for i in group.indices()]
        images = work.source.kind == "images"
        ref = work.frames[group.reference].image
        size = (ref.shape[1], ref.shape[0])
        where = _where(group, work.frames)
        if not images and fade_only(work, group):
            return "a cross-fade between shots"  # its frames mix two views; align keeps them out of groups
        if not images:  # the length test needs no views: short groups (title cards, inserts) cost nothing
            seconds = sum(work.frames[b - 1].time - work.frames[a].time for a, b in group.shots)
            gate = Gate("seconds", seconds, self.cfg.min_seconds)
            if not gate.passed:
                work.gates.append({"where": where, "stage": "process", "gates": [gate.record()]})
                return f"too short ({gate.says()})"
        tol = self.cfg.pixel_tolerance
        views = normalised_views(frames, size, photometric=not images)
        for f, v in zip(frames, views):
            f.view = v
        region = work_region(views, tol)
        curve, visible = completion_curve(views, region, tol)
        parts = measure(views, self.progress.noise, self.progress.coarsest).components
        if images:  # a folder of step images is the process, in order
            score_frames(frames, curve, parts, visible)
            work.segments.append(Segment(frames=frames, region=region, size=size))
            return ""
        k = _ends(len(curve))
        progress = smoothed(parts.mean(axis=1))
        gain = float(np.median(curve[-k:]) - np.median(curve[:k]))
        rho = rising(progress)
        gates = [
            Gate("seconds", seconds, self.cfg.min_seconds),
            Gate("area", float(region.mean()), MIN_AREA),
            Gate("gain", gain, self.cfg.min_gain),
            Gate("step_change", step_change(views, region, tol), self.cfg.max_step_change, at_least=False),
            Gate("monotonic", rho, self.cfg.min_monotonic),
            Gate("spread", spread(progress, np.array([f.time for f in frames])), self.cfg.min_spread),
            Gate("settled", float(np.median(parts.mean(axis=1)[-k:])), self.progress.min_settled),
        ]
        work.gates.append({"where": where, "stage": "process", "gates": [g.record() for g in gates]})
        failed = first_failed(gates)
        if failed is not None:
            return f"{WHY[failed.name]} ({failed.says()})"
        scores = {
            g.name: round(g.value, 4)
            for g in gates
            if g.name in ("gain", "monotonic", "area", "step_change", "spread")
        }
        scores.update(
            start=frames[0].time,
            end=frames[-1].time,
            shots=len(group.shots),
            gates=[g.record() for g in gates],
        )
        score_frames(frames, curve, parts, visible)
        if self.cfg.crop_to_work:
            scores["crop"] = work_box(shown_core(views, region), self.cfg.crop_margin)
        work.segments.append(Segment(frames=frames, scores=scores, region=region, size=size))
        return ""


WHY = {  # what a failed test says about the footage
    "area": "static, nothing accumulates",
    "gain": "static, nothing accumulates",
    "step_change": "everything moves at once: camera motion or live action, not work accumulating",
    "monotonic": "changes without accumulating",
    "spread": "changes all at once, not step by step",
    "settled": "never settles on a final state: live action or a moving camera, not work converging",
}
