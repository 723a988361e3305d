"""Align: put every frame of a video into the coordinates of the work it shows.

Inside a shot each frame is registered to the shot's last frame (or, failing that, to its successor),
which undoes jitter, zooms and pans. Shots are then linked when their frames register to a recent
earlier shot: re-framed shots of one piece of work become one *group*, whatever was cut in between
(a talking head, B-roll, a title card). Every frame of a group gets ``Frame.warp``, the 3x3 transform
into the group's reference view (its last shot's last frame), so completion is measured in the work's
own coordinates across cuts.
"""

from __future__ import annotations

import numpy as np

from pipeline.config import AlignConfig
from pipeline.footage.register import (
    Features,
    beats_standing_still,
    distinct,
    features,
    is_identity,
    match_areas,
    register,
)
from pipeline.footage.transitions import FADE, fade_score, moved_through
from pipeline.work import Group, Work

PROBES = 4  # frames per shot registered to find out whether the camera moves at all
LINK_INLIERS = 8  # shots of one work re-framed at another zoom share fewer features than frames of a shot
SHORT = 1.0  # seconds: a shot shorter than this is a weaker link target (see _standing)
NEXT_FRAME_ZOOMS = (1.0,)  # grey-level matching of a frame to the next starts here: they differ by little


class _Features(dict):
    """Features of analysis frames, computed the first time a frame is registered; and ``step``s."""

    def __init__(self, work: Work) -> None:
        super().__init__()
        self.work = work
        self.steps: dict[int, np.ndarray | None] = {}

    def __missing__(self, i: int) -> Features:
        self[i] = features(self.work.frames[i].image)
        return self[i]

    def step(self, i: int) -> np.ndarray | None:
        """Frame ``i`` onto its successor (kept: the fade test and the chain of a moving shot both ask): by
        features, or where they do not match (the corners of a soft block-in are grain, which a zoom
        resamples and the next pass of paint replaces) by grey levels, which two frames a fraction of a
        second apart share whatever the camera does."""
        if i not in self.steps:
            m = register(self[i], self[i + 1])
            frames = self.work.frames
            self.steps[i] = (
                m if m is not None else match_areas(frames[i].image, frames[i + 1].image, NEXT_FRAME_ZOOMS)
            )
        return self.steps[i]


class _Fades:
    """Whether an analysis frame is part of a cross-fade (a mix of two views), judged as filmed.

    A camera that zooms or pans smoothly also puts each pixel of a frame part-way between its neighbours
    (over a soft picture nearly in one proportion), as a mix does. Where the frame registers to both
    neighbours off the identity and, moved by those registrations, they match it (``moved_through``),
    the camera explains it: no fade, and its score is set to 0 in ``work.fades`` for the stages after."""

    def __init__(self, feats: _Features, tol: float) -> None:
        self.feats, self.work, self.tol = feats, feats.work, tol

    def __getitem__(self, i: int) -> bool:
        if fade_score(self.work, i, self.tol) <= FADE:
            return False
        if self._camera_moved_through(i):
            self.work.fades[i] = 0.0
            return False
        return True

    def _camera_moved_through(self, i: int) -> bool:
        if not 0 < i < len(self.work.frames) - 1:
            return False
        before = self.feats.step(i - 1)
        after = self.feats.step(i) if before is not None else None
        return after is not None and moved_through(self.work, i, before, after, self.tol)


def _shot_warps(
    feats: _Features, fades: _Fades, a: int, b: int, size: tuple[int, int], probes: int
) -> list[tuple[tuple[int, int], list[np.ndarray]]]:
    """Shot [a, b) as one or more shots of one view each, with per frame the transform onto its shot's
    last frame (identity when the camera stands still).

    A few frames spread over the shot are registered first; when none of them moved (``_moved``: a
    blank canvas has too little in common with the end to tell), the camera stood still (jitter, a zoom
    or a pan would show in them) and the shot costs no more registration. Otherwise every frame is registered to
    the end, or chained through its successor. A cross-fade mixes two views and registers to either, so
    nothing is chained through one: the shot is split there (a fade the scene detector did not see as a
    cut), as it is where a frame matches neither the end nor its successor although both show plenty to
    match (the scene changed: a talking head). Fade frames that match nothing, or end a shot, become shots
    of their own.
    """
    if b - 1 > a and fades[b - 1]:  # never a fade as the shot's key: it mixes two views
        return _shot_warps(feats, fades, a, b - 1, size, probes) + [((b - 1, b), [np.eye(3)])]
    key = b - 1
    sample = sorted({int(round(x)) for x in np.linspace(a, key - 1, min(probes, key - a))}) if key > a else []
    if not any(_moved(feats, i, key, size) for i in sample):
        return [((a, b), [np.eye(3) for _ in range(b - a)])]
    warps = [np.eye(3) for _ in range(b - a)]
    for i in range(b - 2, a - 1, -1):
        m = register(feats[i], feats[key])
        if m is None:  # too different from the end of the shot: go through the next frame instead
            later = [((i + 1, b), _still(warps[i + 1 - a :], size))]
            if fades[i] and i > a:
                return _shot_warps(feats, fades, a, i, size, probes) + [((i, i + 1), [np.eye(3)])] + later
            if fades[i]:  # the shot's first frame: a shot of its own
                return [((i, i + 1), [np.eye(3)])] + later
            step = None if fades[i + 1] else feats.step(i)
            if step is None and (fades[i + 1] or distinct(feats[i], feats[i + 1])):
                return _shot_warps(feats, fades, a, i + 1, size, probes) + later
            m = warps[i + 1 - a] @ step if step is not None else warps[i + 1 - a]
        warps[i - a] = m
    return [((a, b), _still(warps, size))]


def _moved(feats: _Features, i: int, key: int, size: tuple[int, int]) -> bool:
    """Whether probe frame ``i`` shows the camera moved since ``key``: it registers to the key off the
    identity; or, where it does not register to the key (the work changed a lot since, or the key is
    the unflagged end of a fade, a mix of two views), it does not stay where its own next frame is (a
    still camera keeps it there, a jittering or re-framed one does not). Where features match neither,
    the camera moved when all three show plenty to match (the scene changed), and otherwise as grey
    levels say: a blank canvas has too little to tell, a soft picture zoomed does not."""
    frames = feats.work.frames
    m = register(feats[i], feats[key])
    if m is not None:
        return not is_identity(m, size) and beats_standing_still(frames[i].image, frames[key].image, m)
    if (
        distinct(feats[i], feats[key])
        and distinct(feats[i], feats[i + 1])
        and register(feats[i], feats[i + 1]) is None
    ):
        return True  # plenty to match, and nothing does: the scene changed
    # By features, else by grey levels: a blank canvas has nothing to tell, a soft picture does.
    step = feats.step(i)
    return (
        step is not None
        and not is_identity(step, size)
        and beats_standing_still(frames[i].image, frames[i + 1].image, step)
    )


def _still(warps: list[np.ndarray], size: tuple[int, int]) -> list[np.ndarray]:
    """Exact identities when no warp moves the view by a pixel: a fixed shot stays on the fast path."""
    return [np.eye(3) for _ in warps] if all(is_identity(m, size) for m in warps) else warps


def _target(fades: _Fades, a: int, b: int, warps: list[np.ndarray]) -> tuple[int, np.ndarray] | None:
    """The frame of shot [a, b) to link to, and its transform onto the shot's last frame: the last frame
    unless that is part of a cross-fade (it mixes two views and registers to either), then the latest
    one before it that is not; None when the shot's last frames are all fade."""
    for t in range(b - 1, max(a, b - 4) - 1, -1):
        if not fades[t]:
            return t, warps[t - a]
    return None


def _link_frames(fades: _Fades, a: int, b: int) -> list[int]:
    """The frames of shot [a, b) tried for a link: its last, first and middle frame, each moved inwards
    past cross-fade frames (a mix of two views registers to either, or to neither)."""

    def inwards(frames: range) -> int | None:  # the first clean frame going this way (usually the first)
        return next((f for f in frames if not fades[f]), None)

    last = inwards(range(b - 1, a - 1, -1))
    if last is None:
        return []
    first, middle = inwards(range(a, last + 1)), inwards(range((a + b) // 2, last + 1))
    return list(dict.fromkeys(f for f in (last, first, middle) if f is not None))


def _either_way(a: Features, b: Features) -> np.ndarray | None:
    """View ``a`` onto view ``b``, matched from either side: the ratio test keeps different matches
    from each side, and between feature-poor views (an untouched piece on a plain desk) one side can
    find the few matches the other misses."""
    m = register(a, b, min_inliers=LINK_INLIERS)
    if m is None and (back := register(b, a, min_inliers=LINK_INLIERS)) is not None:
        m = np.linalg.inv(back)
    return m


def _standing(work: Work, links: dict[int, tuple[int, np.ndarray]], i: int) -> int:
    """How much a link to shot ``i`` is worth: a shot that already belongs to a work (it linked to one
    before it) and lasts a while is the best; a shot under ``SHORT`` seconds is mostly what a fade left
    (a mix of two views registers to either, off by their difference), and one that linked to nothing is
    a loose end (a talking head) as often as the first shot of a new work."""
    a, b = work.shots[i]
    return 2 * (work.frames[b - 1].time - work.frames[a].time >= SHORT) + (i in links)


def _links(
    work: Work, feats: _Features, fades: _Fades, shot_warps: list[list[np.ndarray]], back: int
) -> dict[int, tuple[int, np.ndarray]]:
    """shot -> (of the ``back`` earlier shots that its last, first or middle frame (not a fade) registers
    to, the most recent of the best standing, the transform from this shot's last frame to that one's)."""
    links: dict[int, tuple[int, np.ndarray]] = {}
    targets: dict[int, tuple[int, np.ndarray] | None] = {}
    for j, (a, b) in enumerate(work.shots):
        best = -1
        for i in range(j - 1, max(-1, j - 1 - back), -1):
            if i not in targets:
                targets[i] = _target(fades, *work.shots[i], shot_warps[i])
            standing = _standing(work, links, i)
            if targets[i] is None or standing <= best:
                continue
            t, to_key = targets[i]
            for f in _link_frames(fades, a, b):
                m = _either_way(feats[f], feats[t])
                if m is not None:
                    links[j], best = (i, to_key @ m @ np.linalg.inv(shot_warps[j][f - a])), standing
                    break
            if best == 3:
                break
        if j not in links:
            link = _area_link(work, feats, fades, shot_warps, targets, j)
            if link is not None:
                links[j] = link
    return links


def _area_link(
    work: Work,
    feats: _Features,
    fades: _Fades,
    shot_warps: list[list[np.ndarray]],
    targets: dict[int, tuple[int, np.ndarray] | None],
    j: int,
) -> tuple[int, np.ndarray] | None:
    """Shot ``j`` linked to the nearest earlier shot by matching grey levels, where features did not
    match: one of the two views has too few (the untouched work on a plain desk, as a tutorial often
    opens), or the corners of both are grain and brush texture that the next pass of paint replaced (a
    soft colour block-in, filmed under another exposure after a cut). ECC's correlation of the grey
    levels (``AREA_MIN_RHO``) is what says they show one scene."""
    a, b = work.shots[j]
    i = next((i for i in range(j - 1, -1, -1) if targets.get(i) is not None), None)
    if i is None:
        return None
    t, to_key = targets[i]
    for f in _link_frames(fades, a, b):
        m = match_areas(work.frames[f].image, work.frames[t].image)
        if m is not None:
            return i, to_key @ m @ np.linalg.inv(shot_warps[j][f - a])
    return None


class Align:
    name = "align"

    def __init__(self, cfg: AlignConfig, pixel_tolerance: float) -> None:
        self.cfg = cfg
        self.tol = pixel_tolerance

    def __call__(self, work: Work) -> Work:
        frames = work.frames
        if work.source.kind == "images" or not self.cfg.enabled:  # each shot (a folder: one) stands alone
            work.groups = [Group(shots=[s], reference=s[1] - 1) for s in work.shots]
            return work
        h, w = frames[0].image.shape[:2]
        feats = _Features(work)
        fades = _Fades(feats, self.tol)
        split = [part for a, b in work.shots for part in _shot_warps(feats, fades, a, b, (w, h), PROBES)]
        work.shots = [shot for shot, _ in split]
        shot_warps = [warps for _, warps in split]
        links = _links(work, feats, fades, shot_warps, self.cfg.link_back)
        # Groups: each shot joins the group of the shot it links to. Keys map to the group's first key by
        # following links back, then into the group's reference view (its last shot's key frame).
        group_of: dict[int, int] = {}
        to_first: dict[int, np.ndarray] = {}
        groups: list[list[int]] = []
        for j in range(len(work.shots)):
            if j in links:
                i, m = links[j]
                group_of[j], to_first[j] = group_of[i], to_first[i] @ m
                groups[group_of[i]].append(j)
            else:
                group_of[j], to_first[j] = len(groups), np.eye(3)
                groups.append([j])
        to_ref = {j: np.linalg.inv(to_first[g[-1]]) @ to_first[j] for g in groups for j in g}
        for j, (a, b) in enumerate(work.shots):
            for i in range(a, b):
                frames[i].warp = to_ref[j] @ shot_warps[j][i - a]
        work.groups = [
            Group(shots=[work.shots[j] for j in m], reference=work.shots[m[-1]][1] - 1) for m in groups
        ]
        return work
